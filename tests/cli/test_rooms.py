"""
C{fmtp room} as a user runs it: real C{python -m fmtp} processes against
the server of L{tests.cli.test_messaging} (its chat listener on a
loopback port of its own, named by edgar's config file and annabel's
C{FMTP_CHAT_SERVER}), each action and its refusals.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from fmtp.accounts import hash_password
from fmtp.cli import EXIT_REFUSED, EXIT_USAGE
from fmtp.cli.config import chat_server
from fmtp.cli.rooms import settings_text
from fmtp.client import Client
from fmtp.client.chat import Chat, RoomSettings
from fmtp.objects import user_object
from tests.cli.test_messaging import (  # noqa: F401 (fixtures)
    ANNABEL,
    EDGAR,
    PASSWORD,
    Children,
    CLIServer,
    assert_clean,
    children,
    server,
)
from tests.helpers import FAST_SCRYPT_N, within

LOUNGE = "lounge@poe.net"
MALLORY = "mallory@poe.net"


async def chat_as(server: CLIServer, address: str) -> Chat:  # noqa: F811
    """
    A L{Chat} of C{address} on the server's chat port, closed with the
    server.
    """
    client = await within(Client.connect(reactor, server.chat_tcp, timeout=10))
    server.clients.append(client)
    await within(client.login(address, PASSWORD))
    return Chat(client)


async def add_user(server: CLIServer, address: str) -> None:  # noqa: F811
    store = server.services.store
    await store.add_account(address, hash_password(PASSWORD, n=FAST_SCRYPT_N))
    await store.put_object(user_object(address))


@pytest_twisted.ensureDeferred
async def test_room_lifecycle(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    Edgar creates a public room, annabel finds it, edgar makes it
    members-only and invites her; she joins; edgar lists the members,
    gives her a role, kicks, bans and unbans her, and destroys the room,
    whose name then stays taken.
    """
    made = await children.run(
        ["room", "create", LOUNGE, "--name", "The lounge", "--public", "yes"],
        server.edgar,
    )
    assert_clean(made)
    assert made.out == (
        f"Room: {LOUNGE}\nName: The lounge\nTopic:\nPublic: yes\n"
        "Members-only: no\nModerated: no\nMax-members: 1000\nPassword: no\n"
    )
    listed, listed_json, none_mine = await children.run_all(
        (["room", "list"], server.annabel),
        (["room", "list", "--json"], server.annabel),
        (["room", "mine"], server.annabel),
    )
    assert_clean(listed)
    assert listed.out.splitlines() == [
        "ROOM            NAME",
        f"{LOUNGE}  The lounge",
    ]
    assert listed_json.json() == {"rooms": [{"room": LOUNGE, "name": "The lounge"}]}
    assert none_mine.out == "You are in no room: fmtp chat ROOM joins one.\n"

    changed = await children.run(
        ["room", "config", LOUNGE, "--members-only", "yes", "--json"], server.edgar
    )
    assert_clean(changed)
    assert changed.json()["members_only"] is True
    assert changed.json()["name"] == "The lounge"

    invited = await children.run(["room", "invite", LOUNGE, ANNABEL], server.edgar)
    assert_clean(invited)
    assert invited.out == f"invited {ANNABEL} into {LOUNGE}\n"
    again = await children.run(
        ["room", "invite", LOUNGE, ANNABEL, "--json"], server.edgar
    )
    assert again.json() == {"room": LOUNGE, "address": ANNABEL, "changed": False}

    annabel = await chat_as(server, ANNABEL)
    await within(annabel.join(LOUNGE))
    who, mine = await children.run_all(
        (["room", "who", LOUNGE], server.edgar),
        (["room", "mine"], server.annabel),
    )
    assert_clean(who)
    assert who.out.splitlines() == [
        "ADDRESS          ROLE    VOICE",
        f"{ANNABEL}  member  -",
        f"{EDGAR}    owner   -",
    ]
    assert mine.out == f"{LOUNGE}\n"

    role = await children.run(
        ["room", "role", LOUNGE, ANNABEL, "--role", "moderator", "--voice", "yes"],
        server.edgar,
    )
    assert_clean(role)
    assert role.out == f"{ANNABEL} in {LOUNGE}: moderator, with voice\n"
    # A moderator does not kick an owner: the server's 554, one line.
    upstart = await children.run(["room", "kick", LOUNGE, EDGAR], server.annabel)
    assert_clean(upstart, EXIT_REFUSED)
    assert f"{server.chat_tcp} refused KICK: 554 " in upstart.err

    kicked = await children.run(
        ["room", "kick", LOUNGE, ANNABEL, "--reason", "Quiet, please"], server.edgar
    )
    assert_clean(kicked)
    assert kicked.out == f"kicked {ANNABEL} from {LOUNGE}\n"
    banned = await children.run(["room", "ban", LOUNGE, ANNABEL], server.edgar)
    assert_clean(banned)
    assert banned.out == f"banned {ANNABEL} from {LOUNGE}\n"
    bans = await children.run(
        ["room", "who", LOUNGE, "--role", "banned", "--json"], server.edgar
    )
    assert bans.json() == {
        "room": LOUNGE,
        "members": [{"address": ANNABEL, "role": "banned", "voice": False}],
    }
    lifted = await children.run(["room", "unban", LOUNGE, ANNABEL], server.edgar)
    assert lifted.out == f"lifted the ban on {ANNABEL} in {LOUNGE}\n"
    not_banned = await children.run(["room", "unban", LOUNGE, ANNABEL], server.edgar)
    assert not_banned.out == f"{ANNABEL} was not banned in {LOUNGE}\n"
    invited = await children.run(["room", "invite", LOUNGE, ANNABEL], server.edgar)
    assert_clean(invited)
    declined = await children.run(["room", "decline", LOUNGE, "--json"], server.annabel)
    assert_clean(declined)
    assert declined.json() == {"room": LOUNGE, "changed": True}
    again = await children.run(["room", "decline", LOUNGE], server.annabel)
    assert again.out == f"you were not invited into {LOUNGE}\n"
    domain = await children.run(
        ["room", "ban", LOUNGE, "*@Evil.Example", "--reason", "a botnet"], server.edgar
    )
    assert_clean(domain)
    assert domain.out == f"banned *@evil.example from {LOUNGE}\n"
    lifted = await children.run(
        ["room", "unban", LOUNGE, "*@evil.example"], server.edgar
    )
    assert lifted.out == f"lifted the ban on *@evil.example in {LOUNGE}\n"

    outsider = await children.run(["room", "destroy", LOUNGE], server.annabel)
    assert_clean(outsider, EXIT_REFUSED)
    assert "refused DESTROY: 554" in outsider.err
    destroyed = await children.run(["room", "destroy", LOUNGE], server.edgar)
    assert_clean(destroyed)
    assert destroyed.out == f"{LOUNGE} destroyed\n"
    taken = await children.run(["room", "create", LOUNGE], server.edgar)
    assert_clean(taken, EXIT_REFUSED)
    assert "refused CREATE: 554" in taken.err
    gone = await children.run(["room", "config", LOUNGE], server.edgar)
    assert_clean(gone, EXIT_REFUSED)
    assert "refused CONFIG: 550" in gone.err


@pytest_twisted.ensureDeferred
async def test_room_password_from_a_file(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    A room password set from a file is needed to join, then cleared;
    the reply says only that there is one.
    """
    secret = server.tmp_path / "room-password"
    secret.write_text("Lenore\n")
    made = await children.run(
        ["room", "create", LOUNGE, "--room-password-file", str(secret), "--json"],
        server.edgar,
    )
    assert_clean(made)
    assert made.json()["password_protected"] is True
    annabel = await chat_as(server, ANNABEL)
    with pytest.raises(Exception) as refused:
        await within(annabel.join(LOUNGE))
    # A private room: to an outsider, a refused JOIN reads as no such room.
    assert refused.value.code == 550
    assert (await within(annabel.join(LOUNGE, "Lenore"))).role == "member"
    cleared = await children.run(
        ["room", "config", LOUNGE, "--clear-password", "--json"], server.edgar
    )
    assert cleared.json()["password_protected"] is False


@pytest_twisted.ensureDeferred
async def test_room_usage_errors(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    Bad command lines: one line and status 2, before connecting.
    """
    bad = [
        ["room"],
        ["room", "frob", LOUNGE],
        ["room", "kick", LOUNGE],
        ["room", "who", LOUNGE, ANNABEL],
        ["room", "list", LOUNGE],
        ["room", "who", "not-an-address"],
        ["room", "create", LOUNGE, "--public", "maybe"],
        ["room", "create", LOUNGE, "--max-members", "many"],
        ["room", "who", LOUNGE, "--name", "x"],
        ["room", "who", LOUNGE, "--role", "owner"],
        ["room", "role", LOUNGE, ANNABEL],
        ["room", "kick", LOUNGE, ANNABEL, "--voice", "yes"],
        ["room", "unban", LOUNGE, ANNABEL, "--reason", "x"],
        ["room", "kick", LOUNGE, "*@evil.example"],
        ["room", "ban", LOUNGE, "*@"],
        ["room", "create", LOUNGE, "--clear-password"],
        ["room", "list", "--chat-server", "udp:127.0.0.1:7072"],
    ]
    ran = await children.run_all(*[(args, server.edgar) for args in bad])
    for args, result in zip(bad, ran, strict=True):
        assert_clean(result, EXIT_USAGE)
        assert "--help" in result.err, (args, result)


@pytest_twisted.ensureDeferred
async def test_moderator_refusals_carry_the_servers_text(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    A member who is no moderator cannot invite, ban or give roles: each
    refusal is one line with the server's code, status 1.
    """
    await add_user(server, MALLORY)
    edgar = await chat_as(server, EDGAR)
    await within(edgar.create(LOUNGE, public=True))
    annabel = await chat_as(server, ANNABEL)
    await within(annabel.join(LOUNGE))
    refused = await children.run_all(
        (["room", "invite", LOUNGE, MALLORY], server.annabel),
        (["room", "ban", LOUNGE, MALLORY], server.annabel),
        (["room", "role", LOUNGE, ANNABEL, "--role", "owner"], server.annabel),
        (["room", "config", LOUNGE, "--topic", "Mine"], server.annabel),
    )
    for ran, verb in zip(refused, ["INVITE", "BAN", "ROLE", "CONFIG"], strict=True):
        assert_clean(ran, EXIT_REFUSED)
        assert f"refused {verb}: 554 " in ran.err, ran


def test_chat_server_is_derived() -> None:
    """
    The chat server defaults to the server's host on port 7072.
    """
    assert chat_server("tcp:mail.poe.net:7070") == "tcp:mail.poe.net:7072"
    assert chat_server("udp:[::1]:7070") == "tcp:\\:\\:1:7072"
    assert chat_server("unix:/run/fmtp.sock") is None


def test_settings_text_escapes_what_the_owner_set() -> None:
    """
    A room's name and topic are someone else's text: control characters
    come out escaped.
    """
    settings = RoomSettings(LOUNGE, "Evil\x1b[2J", "", True, False, False, 10, True)
    text = settings_text(settings)
    assert "\x1b" not in text
    assert "Name: Evil\\x1b[2J\n" in text
    assert "Password: yes\n" in text
