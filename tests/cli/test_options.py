"""
Parsing the C{fmtp} command line, without running anything: options
after the positional arguments (as people type them), and where the
client commands' settings come from (option, environment, config file,
default).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from fmtp.cli.config import DEFAULT_SERVER, ClientOptions, config_path
from fmtp.cli.main import COMMANDS, Options
from fmtp.cli.options import options_first


def parse(argv: list[str]) -> usage.Options:
    options = Options()
    options.parseOptions(argv)
    return options.subOptions


def test_check_dns_options_after_the_domain() -> None:
    """
    Issue 7, item 6: C{fmtp check-dns poe.net --key-file F} was refused
    as "Wrong number of arguments".
    """
    sub = parse(["check-dns", "poe.net", "--key-file", "F", "--dns", "127.0.0.1:53"])
    assert (sub["domain"], sub["key-file"], sub["dns"]) == (
        "poe.net",
        "F",
        [("127.0.0.1", 53)],
    )


def test_options_first_is_exact_about_values() -> None:
    """
    An option's value is never taken for an option or an argument, and
    an argument that looks like an option after C{--} stays an argument.
    """
    short, long = "s:p", ["server=", "public", "subject="]
    assert options_first(
        ["a", "--subject", "-p", "b", "-s", "--x", "-p", "--", "--public"],
        short,
        long,
    ) == ["--subject=-p", "-s", "--x", "-p", "--", "a", "b", "--public"]
    assert options_first(["-", "--subject="], short, long) == [
        "--subject=",
        "--",
        "-",
    ]
    # Unique prefixes of long options, as getopt allows.
    assert options_first(["x", "--pub"], short, long) == ["--public", "--", "x"]
    with pytest.raises(usage.UsageError):
        options_first(["x", "--subject"], short, long)
    with pytest.raises(usage.UsageError):
        options_first(["x", "--bogus"], short, long)


def test_every_command_takes_options_after_arguments() -> None:
    sub = parse(["put", "body.txt", "--user", "edgar@poe.net", "--public"])
    assert (sub["file"], sub["user"], sub["public"]) == (
        "body.txt",
        "edgar@poe.net",
        True,
    )
    sub = parse(["get", "some-id", "--timeout", "3"])
    assert (sub["id"], sub["timeout"]) == ("some-id", 3.0)


def test_every_command_has_an_example() -> None:
    for command in COMMANDS:
        usage_text = command.options().getUsage()
        examples = usage_text.partition("\nExamples:\n")[2].partition("\n\n")[0]
        assert f"fmtp {command.name}" in examples, command.name
        assert "Exit status:" in usage_text, command.name


def client_options(
    argv: list[str], environ: dict[str, str], kind=ClientOptions
) -> ClientOptions:
    options = kind(environ)
    options.parseOptions(argv)
    return options


def write_config(home: Path, text: str) -> Path:
    path = home / "fmtp" / "client.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_settings_precedence(tmp_path: Path) -> None:
    """
    Option over environment over config file over default, setting by
    setting.
    """
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert config_path(environ) == tmp_path / "fmtp" / "client.ini"
    defaults = client_options([], environ)
    assert (defaults["server"], defaults["user"], defaults["timeout"]) == (
        DEFAULT_SERVER,
        None,
        10.0,
    )

    write_config(
        tmp_path,
        "[client]\nserver = tcp:config.example:7070\nuser = Edgar@Poe.net\n"
        "password-file = secret\ntimeout = 20\n",
    )
    configured = client_options([], environ)
    assert configured["server"] == "tcp:config.example:7070"
    assert configured["user"] == "edgar@poe.net"
    # Relative to the config file's directory.
    assert configured["password-file"] == str(tmp_path / "fmtp" / "secret")
    assert configured["timeout"] == 20.0

    environ |= {"FMTP_SERVER": "tcp:env.example:7070", "FMTP_USER": "lost@poe.net"}
    from_env = client_options([], environ)
    assert (from_env["server"], from_env["user"]) == (
        "tcp:env.example:7070",
        "lost@poe.net",
    )
    named = client_options(["--server", "tcp:opt.example:1", "-u", "a@b.org"], environ)
    assert (named["server"], named["user"]) == ("tcp:opt.example:1", "a@b.org")


def test_relative_xdg_config_home_is_ignored(tmp_path: Path) -> None:
    path = config_path({"XDG_CONFIG_HOME": "relative/dir"})
    assert path.parts[-3:] == (".config", "fmtp", "client.ini")
    assert path.is_absolute()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[client]\nsever = tcp:x:1\n", "unknown setting 'sever'"),
        ("[clients]\nserver = tcp:x:1\n", "unknown section [clients]"),
        ("server = tcp:x:1\n", "client.ini"),
        ("[client]\ntimeout = soon\n", "timeout in"),
        ("[client]\nserver = localhost:7070\n", "server in"),
        ("[client]\nuser = not an address\n", "user in"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, named: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(usage.UsageError) as refused:
        client_options([], {"XDG_CONFIG_HOME": str(tmp_path)})
    assert named in str(refused.value)
    assert "\n" not in str(refused.value)


def test_account_required(tmp_path: Path) -> None:
    class NeedsAccount(ClientOptions):
        needs_account = True

    with pytest.raises(usage.UsageError) as refused:
        client_options([], {"XDG_CONFIG_HOME": str(tmp_path)}, NeedsAccount)
    assert "--user" in str(refused.value) and "FMTP_USER" in str(refused.value)
