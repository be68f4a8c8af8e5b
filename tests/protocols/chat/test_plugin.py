"""
The chat plugin: registered as a built-in, served over streams and
datagrams on port 7072 (off with C{--listen-chat none}), and tuned by
the server's options.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface.verify import verifyObject

from fmtp.discovery import builtin_plugins, is_builtin
from fmtp.interfaces import IProtocolPlugin
from fmtp.protocols.chat.plugin import ChatProtocolPlugin
from fmtp.protocols.chat.settings import DEFAULT_SETTINGS, ChatSettings
from fmtp.serveroptions import Options
from tests.helpers import make_services


def test_a_builtin_on_port_7072_over_streams_and_datagrams() -> None:
    plugin = builtin_plugins()["chat"]
    assert is_builtin(plugin)
    assert verifyObject(IPlugin, plugin) and verifyObject(IProtocolPlugin, plugin)
    assert plugin.default_listeners == (
        "tcp:7072:interface=127.0.0.1",
        "udp:7072:interface=127.0.0.1",
    )
    handler = plugin.handler(make_services(Clock()))
    assert handler.datagram_commands == {"CAPA", "SAY", "LISTEN", "UNLISTEN"}
    assert plugin.datagram_protocol(make_services(Clock())) is not None


def chat_of(plugin: ChatProtocolPlugin, services) -> ChatSettings:
    return plugin.handler(services).groups[1].chat.settings


def test_enabled_by_default_and_switched_off_with_none(tmp_path) -> None:
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path)])
    assert "chat" in options["plugins"]
    off = Options()
    off.parseOptions(["--data-dir", str(tmp_path), "--listen-chat", "none"])
    assert off["listen"]["chat"] == ["none"]


def test_settings_come_from_the_servers_options(tmp_path) -> None:
    options = Options()
    options.parseOptions(
        [
            "--data-dir",
            str(tmp_path),
            "--chat-max-members",
            "20",
            "--chat-member-rate",
            "30",
            "--chat-room-rate",
            "120",
            "--chat-user-rate",
            "240",
            "--chat-join-rate",
            "6",
            "--chat-max-line",
            "100",
            "--chat-hold-days",
            "2",
            "--chat-remote-rate",
            "600",
        ]
    )
    chosen = options["plugin-options"]["chat"]
    assert (chosen.max_members, chosen.max_body) == (20, 100)
    assert (chosen.say_rate, chosen.room_rate, chosen.join_rate) == (0.5, 2.0, 0.1)
    assert chosen.tombstone_hold == 2 * 86400
    assert chosen.user_rate == 4.0
    assert chosen.remote_rate == 10.0
    services = make_services(Clock(), plugin_options={"chat": chosen})
    assert chat_of(ChatProtocolPlugin(), services) == chosen
    assert chat_of(ChatProtocolPlugin(), make_services(Clock())) == DEFAULT_SETTINGS


@pytest.mark.parametrize(
    "option, value",
    [
        ("--chat-max-members", "0"),
        ("--chat-max-members", "many"),
        ("--chat-member-rate", "0"),
        ("--chat-room-rate", "1.5"),
        ("--chat-user-rate", "0"),
        ("--chat-join-rate", "6001"),
        ("--chat-max-line", "65537"),
        ("--chat-hold-days", "-1"),
        ("--chat-remote-rate", "0"),
    ],
)
def test_bad_options_are_refused(tmp_path, option: str, value: str) -> None:
    with pytest.raises(usage.UsageError, match=option):
        Options().parseOptions(["--data-dir", str(tmp_path), option, value])
