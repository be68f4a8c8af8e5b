"""
Rooms across domains end to end: two servers on their own loopback
addresses, found through a real DNS server (the federation tests'
network); users of both talk in a room of one, a member whose server was
down catches up, moderation works across the two, and the history's
chain and every signature in it verify.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from fmtp.cli import EXIT_OK
from fmtp.client import ChatDatagramClient, FrameClientProtocol, connect
from fmtp.federation.housekeeping import Housekeeping
from fmtp.keys.signing import verify_signed_by
from fmtp.protocols.chat.federation import PUSH_TYPE
from fmtp.protocols.chat.lines import as_posted
from fmtp.store.rooms import verify_chain
from tests.cli.test_messaging import (  # noqa: F401 (fixtures)
    COMMAND_TIMEOUT,
    Children,
    children,
    environment,
)
from tests.helpers import eventually, within
from tests.integration.test_chat import CHAT_PUSHES, ask, entries_of, next_push
from tests.integration.test_federation import EDGAR, LOST, PASSWORD, Server
from tests.integration.test_twistd import wait_for_exit

LOUNGE = "lounge@poe.net"
ANNABEL = "annabel@poe.net"
RAVEN = "raven@lenore.org"


async def start_pair(network) -> tuple[Server, Server]:
    poe = await network.start("poe.net", "127.0.0.2")
    lenore = await start_lenore(network)
    for address in (EDGAR, ANNABEL):
        await poe.add_account(address)
    return poe, lenore


async def start_lenore(network, accounts: bool = True) -> Server:
    listen = {"chat": ["tcp:0:interface=127.0.0.3", "udp:0:interface=127.0.0.3"]}
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True, listen=listen)
    for address in (LOST, RAVEN) if accounts else ():
        await lenore.add_account(address)
    return lenore


async def chat_login(
    server: Server, address: str, keys: dict | None = None
) -> FrameClientProtocol:
    port = server.ports["chat", "tcp"]
    client = await within(connect(reactor, f"tcp:{server.address}:{port}", timeout=5.0))
    client.push_codes = CHAT_PUSHES
    server.clients.append(client)
    answer = await ask(
        client, "LOGIN", headers={"Address": address, "Password": PASSWORD}
    )
    assert answer.code == 230, answer
    if keys is not None:
        keys[address] = answer.headers["Session"]
    return client


async def pushed(client: FrameClientProtocol, code: int, **headers: str):
    """
    The next push of C{code} with C{headers}, skipping others.
    """
    while True:
        frame = await next_push(client)
        if frame.code == code and all(
            frame.headers.get(k) == v for k, v in headers.items()
        ):
            return frame


async def lounge_of_both(poe: Server, lenore: Server):
    edgar = await chat_login(poe, EDGAR)
    lost = await chat_login(lenore, LOST)
    made = await ask(edgar, "CREATE", LOUNGE, {"Public": "yes"})
    assert made.code == 201, made
    assert (await ask(edgar, "ENTER", LOUNGE)).code == 200
    joined = await ask(lost, "JOIN", LOUNGE)
    assert joined.code == 200, joined
    assert joined.headers["Role"] == "member"
    await pushed(edgar, 257, Address=LOST, Role="member")
    entered = await ask(lost, "ENTER", LOUNGE)
    assert entered.code == 200, entered
    return edgar, lost


async def verified(server: Server, entries) -> None:
    """
    The chain links, the home signed every entry, and each line of a user
    of another domain carries its poster's domain's signature.
    """
    verify_chain(entries)
    keys = server.services.keys
    for entry in entries:
        if entry.obj is None:
            continue
        await within(verify_signed_by(keys, entry.obj, "poe.net", reactor))
        posted = as_posted(entry.obj)
        if entry.obj.properties["From"].endswith("@lenore.org"):
            assert posted is not None
            await within(keys.verify_object(posted))


@pytest_twisted.ensureDeferred
async def test_members_of_two_domains_talk_and_the_chain_verifies(network) -> None:
    poe, lenore = await start_pair(network)
    edgar, lost = await lounge_of_both(poe, lenore)

    said = await ask(edgar, "SAY", LOUNGE, body=b"Quoth the raven")
    assert said.code == 201, said
    line = await pushed(lost, 256, Room=LOUNGE, Seq="1")
    assert line.body == b"Quoth the raven"

    said = await ask(lost, "SAY", LOUNGE, {"Format": "plain"}, b"Nevermore")
    assert said.code == 201, said
    assert said.headers["Seq"] == "2"
    line = await pushed(edgar, 256, Seq="2", From=LOST)
    assert line.body == b"Nevermore"
    # The poster's own session receives it too, once.
    await pushed(lost, 256, Seq="2")

    # Lost reads the history through his server; Edgar from the home.
    page = await ask(lost, "HISTORY", LOUNGE)
    assert page.code == 200 and page.headers["Head"] == "2", page
    entries = entries_of(page.body)
    assert entries == entries_of((await ask(edgar, "HISTORY", LOUNGE)).body)
    await verified(lenore, entries)
    assert "Poster-Signature" in entries[1].obj.properties

    who = await ask(lost, "WHO", LOUNGE)
    assert who.body == f"{EDGAR} owner -\r\n{LOST} member -\r\n".encode()
    # A room is created on its own domain's server.
    assert (await ask(lost, "CREATE", "den@poe.net")).code == 554
    # A server acts for its own users only: Lost's says he is Lost.
    assert (await ask(lost, "SAY", LOUNGE, {"Actor": EDGAR}, b"x")).code == 201
    mine = entries_of((await ask(edgar, "HISTORY", LOUNGE, {"Since": "2"})).body)
    assert mine[0].obj.properties["From"] == LOST


@pytest_twisted.ensureDeferred
async def test_a_member_whose_server_was_down_catches_up(network) -> None:
    poe, lenore = await start_pair(network)
    edgar, lost = await lounge_of_both(poe, lenore)
    await ask(edgar, "SAY", LOUNGE, body=b"one")
    await pushed(lost, 256, Seq="1")

    await lenore.stop()
    for text in (b"two", b"three", b"four"):
        assert (await ask(edgar, "SAY", LOUNGE, body=text)).code == 201

    lenore = await start_lenore(network, accounts=False)
    lost = await chat_login(lenore, LOST)
    # Back with the last line he saw: the ones said while away, then live.
    entered = await ask(lost, "ENTER", LOUNGE, {"Since": "1"})
    assert entered.code == 200, entered
    caught = [await pushed(lost, 256) for _ in range(3)]
    assert [f.body for f in caught] == [b"two", b"three", b"four"]
    await ask(edgar, "SAY", LOUNGE, body=b"five")
    live = await pushed(lost, 256)
    # No duplicate: what the queue brings after the catch-up is dropped.
    assert (live.headers["Seq"], live.body) == ("5", b"five")
    entries = entries_of((await ask(lost, "HISTORY", LOUNGE)).body)
    await verified(lenore, entries)


@pytest_twisted.ensureDeferred
async def test_moderation_across_domains(network) -> None:
    poe, lenore = await start_pair(network)
    edgar, lost = await lounge_of_both(poe, lenore)
    raven = await chat_login(lenore, RAVEN)
    annabel = await chat_login(poe, ANNABEL)
    assert (await ask(raven, "JOIN", LOUNGE)).code == 200
    assert (await ask(annabel, "JOIN", LOUNGE)).code == 200
    assert (await ask(annabel, "ENTER", LOUNGE)).code == 200

    # A moderator of another domain kicks a local member.
    role = await ask(edgar, "ROLE", LOUNGE, {"Address": LOST, "Role": "moderator"})
    assert role.code == 200, role
    kicked = await ask(lost, "KICK", LOUNGE, {"Address": ANNABEL, "Reason": "noise"})
    assert kicked.code == 200, kicked
    await pushed(annabel, 259, Room=LOUNGE, Reason="kicked")

    # The home's owner kicks a remote member: his session there is closed.
    assert (await ask(raven, "ENTER", LOUNGE)).code == 200
    assert (await ask(edgar, "KICK", LOUNGE, {"Address": RAVEN})).code == 200
    await pushed(raven, 259, Room=LOUNGE, Reason="kicked")
    await pushed(lost, 257, Address=RAVEN, Role="none", By=EDGAR)

    # Banned from another domain: he cannot come back, or speak.
    assert (await ask(edgar, "BAN", LOUNGE, {"Address": RAVEN})).code == 200
    back = await ask(raven, "JOIN", LOUNGE)
    assert back.code == 554, back
    assert (await ask(raven, "SAY", LOUNGE, body=b"caw")).code == 554

    # A moderated room: a remote member without voice is refused.
    assert (
        await ask(edgar, "ROLE", LOUNGE, {"Address": LOST, "Role": "member"})
    ).code == 200
    assert (await ask(edgar, "CONFIG", LOUNGE, {"Moderated": "yes"})).code == 200
    quiet = await ask(lost, "SAY", LOUNGE, body=b"may I?")
    assert quiet.code == 554, quiet
    voiced = await ask(edgar, "ROLE", LOUNGE, {"Address": LOST, "Voice": "yes"})
    assert voiced.code == 200
    assert (await ask(lost, "SAY", LOUNGE, body=b"thank you")).code == 201

    # An invitation reaches a user of another domain.
    assert (await ask(edgar, "UNBAN", LOUNGE, {"Address": RAVEN})).code == 200
    assert (await ask(edgar, "INVITE", LOUNGE, {"Address": RAVEN})).code == 200
    await pushed(raven, 258, Room=LOUNGE, From=EDGAR)

    # The room destroyed: the remote sessions that entered it are told.
    assert (await ask(edgar, "DESTROY", LOUNGE)).code == 200
    await pushed(lost, 259, Room=LOUNGE, Reason="destroyed")


@pytest_twisted.ensureDeferred
async def test_a_room_bans_a_whole_domain(network) -> None:
    """
    A hostile domain's server makes up users at will: the room bans the
    domain, its members' sessions there are closed, and none of its users,
    made up after the ban or not, come back.
    """
    poe, lenore = await start_pair(network)
    edgar, lost = await lounge_of_both(poe, lenore)
    raven = await chat_login(lenore, RAVEN)
    annabel = await chat_login(poe, ANNABEL)
    for user in (raven, annabel):
        assert (await ask(user, "JOIN", LOUNGE)).code == 200
        assert (await ask(user, "ENTER", LOUNGE)).code == 200

    assert (await ask(annabel, "BAN", LOUNGE, {"Address": "*@lenore.org"})).code == 554
    own = await ask(edgar, "BAN", LOUNGE, {"Address": "*@poe.net"})
    assert own.code == 554, own
    ban = {"Address": "*@lenore.org", "Reason": "a botnet"}
    banned = await ask(edgar, "BAN", LOUNGE, ban)
    assert banned.code == 200, banned
    for user in (lost, raven):
        await pushed(user, 259, Room=LOUNGE, Reason="banned")
    for address in (LOST, RAVEN):
        await pushed(annabel, 257, Address=address, Role="banned", By=EDGAR)
    bans = await ask(edgar, "WHO", LOUNGE, {"Role": "banned"})
    assert bans.body == b"*@lenore.org banned -\r\n", bans

    await lenore.add_account("made.up@lenore.org")
    made_up = await chat_login(lenore, "made.up@lenore.org")
    for user in (made_up, lost):
        refused = await ask(user, "JOIN", LOUNGE)
        assert refused.code == 554, refused
    assert (await ask(raven, "SAY", LOUNGE, body=b"caw")).code == 554

    lifted = await ask(edgar, "UNBAN", LOUNGE, {"Address": "*@lenore.org"})
    assert (lifted.code, lifted.headers["Changed"]) == (200, "yes")
    assert (await ask(made_up, "JOIN", LOUNGE)).code == 200


@pytest_twisted.ensureDeferred
async def test_a_light_client_listens_to_a_room_of_another_domain(network) -> None:
    poe, lenore = await start_pair(network)
    edgar = await chat_login(poe, EDGAR)
    keys: dict[str, str] = {}
    lost = await chat_login(lenore, LOST, keys)
    assert (await ask(edgar, "CREATE", LOUNGE, {"Public": "yes"})).code == 201
    assert (await ask(lost, "JOIN", LOUNGE)).code == 200
    light = ChatDatagramClient(
        reactor, "127.0.0.3", lenore.ports["chat", "udp"], keys[LOST], timeout=2.0
    )
    port = reactor.listenUDP(0, light, interface="127.0.0.3")
    try:
        listening = await within(light.listen(LOUNGE))
        assert (listening.code, listening.headers["Seq"]) == (200, "0"), listening
        said = await ask(edgar, "SAY", LOUNGE, body=b"Take thy beak from out my heart")
        line = await within(light.pushes.get())
        assert (line.code, line.headers["Seq"]) == (256, said.headers["Seq"])
        mine = await within(light.say(LOUNGE, "Quoth the raven"))
        assert mine.code == 201, mine
        echoed = await within(light.pushes.get())
        assert (echoed.headers["From"], echoed.body) == (LOST, b"Quoth the raven")
        assert light.forged == 0
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_domains_password_tries_are_counted_together(network) -> None:
    """
    Each user's tries are rated, and so are those of all the users of one
    other domain at one room: its server could make up users at will.
    """
    poe, lenore = await start_pair(network)
    edgar = await chat_login(poe, EDGAR)
    made = await ask(edgar, "CREATE", LOUNGE, {"Public": "yes", "Password": "raven"})
    assert made.code == 201, made
    lost = await chat_login(lenore, LOST)
    raven = await chat_login(lenore, RAVEN)
    wrong = {"Password": "crow"}
    codes = [(await ask(lost, "JOIN", LOUNGE, wrong)).code for _ in range(6)]
    codes += [(await ask(raven, "JOIN", LOUNGE, wrong)).code for _ in range(5)]
    # Raven tried 5 times only, within his own rate: his domain's is spent.
    assert codes == [554] * 10 + [429], codes
    # A user of the home's own domain is not held back by it.
    annabel = await chat_login(poe, ANNABEL)
    joined = await ask(annabel, "JOIN", LOUNGE, {"Password": "raven"})
    assert joined.code == 200, joined


@pytest_twisted.ensureDeferred
async def test_delivered_pushes_are_forgotten_by_housekeeping(network) -> None:
    """
    A room's pushes to another domain are nobody's mail: the home forgets
    them once delivered (at its housekeeping's sweep an hour on, brought
    forward here), and the receiving server never stores them.
    """
    poe, lenore = await start_pair(network)
    edgar, lost = await lounge_of_both(poe, lenore)
    said = await ask(edgar, "SAY", LOUNGE, body=b"Quoth the raven")
    assert said.code == 201, said
    await pushed(lost, 256, Room=LOUNGE, Seq="1")

    async def dequeued():
        return not await poe.services.store.queued_for("lenore.org")

    await eventually(dequeued)
    assert await pushes_held(poe)
    assert not await pushes_held(lenore)

    housekeeping = next(s for s in poe.root if isinstance(s, Housekeeping))
    housekeeping.delivered_lifetime = -1.0
    await within(housekeeping.sweep())
    assert not await pushes_held(poe)
    # The room and its history are not the pushes: both are still there.
    page = await ask(edgar, "HISTORY", LOUNGE)
    assert page.code == 200 and page.headers["Head"] == "1", page


async def pushes_held(server: Server) -> list:
    return await server.services.store.list_objects(
        0, 100, type=PUSH_TYPE, public_only=False
    )


@pytest_twisted.ensureDeferred
async def test_fmtp_chat_in_a_room_of_another_domain(
    network,
    children: Children,  # noqa: F811
    tmp_path,
) -> None:
    """
    Lost, of lenore.org, runs C{fmtp chat lounge@poe.net} at a terminal
    against his own server: it joins the room through it, shows what was
    said before, Edgar's line as it comes, and says Lost's line to him.
    """
    poe, lenore = await start_pair(network)
    edgar = await chat_login(poe, EDGAR)
    assert (await ask(edgar, "CREATE", LOUNGE, {"Public": "yes"})).code == 201
    assert (await ask(edgar, "SAY", LOUNGE, body=b"Before you came")).code == 201
    assert (await ask(edgar, "ENTER", LOUNGE)).code == 200
    password = tmp_path / "lost-password"
    password.write_text(PASSWORD + "\n")
    lost = environment(
        XDG_CONFIG_HOME=str(tmp_path / "nothing"),
        FMTP_SERVER=f"tcp:{lenore.address}:{lenore.port}",
        FMTP_USER=LOST,
        FMTP_PASSWORD_FILE=str(password),
        FMTP_CHAT_SERVER=f"tcp:{lenore.address}:{lenore.ports['chat', 'tcp']}",
    )
    child, terminal, err = children.start_on_pty(["chat", LOUNGE], lost)
    await terminal.shows(f"-- in {LOUNGE}")
    assert f"{EDGAR}: Before you came\n" in terminal.shown()
    await ask(edgar, "SAY", LOUNGE, body=b"Quoth the raven")
    await terminal.shows(f"{EDGAR}: Quoth the raven\n")
    terminal.type("Nevermore\n")
    heard = await pushed(edgar, 256, From=LOST)
    assert heard.body == b"Nevermore"
    await terminal.shows(f"{LOST}: Nevermore\n")
    terminal.type("/leave\n")
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_OK
    assert err.read_text() == ""
    who = await ask(edgar, "WHO", LOUNGE)
    assert who.body == f"{EDGAR} owner -\r\n".encode()
