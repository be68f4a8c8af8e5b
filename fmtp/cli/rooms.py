"""
C{fmtp room ACTION ROOM ...}: one request of the chat protocol
(doc/protocol.md section 10) each, through L{fmtp.client.chat.Chat} on
the chat port: create, configure and destroy rooms, invite, kick, ban
and give roles, and list members and rooms.  C{fmtp chat ROOM}
(L{fmtp.cli.chat}) is where one talks.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from fmtp.cli.config import ChatClientOptions, login_password, read_password
from fmtp.cli.messaging import parse_recipient
from fmtp.cli.options import JSONOption
from fmtp.cli.output import print_json, printable, table
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.session import connected
from fmtp.cli.status import EXIT_OK
from fmtp.client.chat import Chat, Member, RoomListing, RoomSettings, Standing
from fmtp.errors import InvalidAddress
from fmtp.store.rooms import normalize_ban_address

#: What each action takes after ROOM: C{True} for an ADDRESS.
ACTIONS = {
    "create": False,
    "config": False,
    "destroy": False,
    "decline": False,
    "invite": True,
    "kick": True,
    "ban": True,
    "unban": True,
    "role": True,
    "who": False,
}
#: The actions that name no room.
ROOMLESS = ("list", "mine")
#: The options that set a room's configuration (create and config).
CONFIG_OPTIONS = (
    "name",
    "topic",
    "public",
    "members-only",
    "moderated",
    "max-members",
)


def parse_ban_target(text: str) -> str:
    """
    What ban and unban name: an address, or C{*@DOMAIN} for all of one.
    """
    try:
        return normalize_ban_address(text)
    except InvalidAddress as e:
        raise usage.UsageError(e.message)


def parse_yes_no(text: str, option: str) -> bool:
    word = text.lower()
    if word not in ("yes", "no"):
        raise usage.UsageError(f"--{option} must be yes or no")
    return word == "yes"


class RoomOptions(JSONOption, ChatClientOptions):
    synopsis = (
        "create|config|destroy|who|decline ROOM | invite|kick|ban|unban|role ROOM "
        "ADDRESS | list | mine  [options] [--json]"
    )
    longdesc = (
        "Manage chat rooms on the chat server (fmtp chat ROOM talks in one).  "
        "create makes ROOM (an address of your server's domain) with you as "
        "its owner; config changes its settings (owners) or, with none, shows "
        "them; destroy removes it with its members and history.  invite lets "
        "ADDRESS join a members-only room (decline turns your own invitation "
        "down); kick removes a member (who may "
        "join again); ban removes and keeps out until unban (ADDRESS "
        "'*@DOMAIN': every address of DOMAIN); role gives a "
        "member a --role (owner, moderator, member) and/or --voice.  who lists "
        "the members (moderators: --role banned or invited lists those); list "
        "lists the public rooms; mine lists the rooms you are a member of.  "
        "A room password is never an option: --room-password asks it on the "
        "terminal, --room-password-file reads it from a file."
    )
    examples = (
        "fmtp room create lounge@poe.net --name 'The lounge' --public yes",
        "fmtp room config lounge@poe.net --moderated yes --room-password",
        "fmtp room invite lounge@poe.net annabel@poe.net",
        "fmtp room role lounge@poe.net annabel@poe.net --role moderator",
        "fmtp room kick lounge@poe.net mallory@poe.net --reason 'Spam'",
        "fmtp room who lounge@poe.net --json",
        "fmtp room list",
    )
    optFlags = [
        ["room-password", None, "create, config: ask the room's password."],
        ["clear-password", None, "config: joining needs no password any more."],
    ]
    optParameters = [
        ["name", None, None, "create, config: the room's display name."],
        ["topic", None, None, "create, config: the room's topic."],
        ["public", None, None, "create, config: yes lists the room for anyone."],
        ["members-only", None, None, "create, config: yes: only the invited join."],
        ["moderated", None, None, "create, config: yes: only voices speak."],
        ["max-members", None, None, "create, config: the most members."],
        [
            "room-password-file",
            None,
            None,
            "create, config: read the room's password from this file's first "
            "line ('-': standard input).",
        ],
        ["reason", None, None, "kick, ban: why, told to the room."],
        [
            "role",
            None,
            None,
            "role: owner, moderator or member; who: banned or invited.",
        ],
        ["voice", None, None, "role: yes or no."],
    ]

    def parseArgs(self, action: str, *rest: str) -> None:
        if action in ROOMLESS:
            if rest:
                raise usage.UsageError(f"{action} takes no argument")
            self["action"], self["room"], self["address"] = action, None, None
            return
        if action not in ACTIONS:
            known = ", ".join([*ACTIONS, *ROOMLESS])
            raise usage.UsageError(f"unknown action {action!r} (known: {known})")
        wanted = 2 if ACTIONS[action] else 1
        if len(rest) != wanted:
            shape = "ROOM ADDRESS" if ACTIONS[action] else "ROOM"
            raise usage.UsageError(f"{action} takes {shape}")
        self["action"] = action
        self["room"] = parse_recipient(rest[0])
        address = None
        if wanted == 2:
            domains = action in ("ban", "unban")
            address = parse_ban_target(rest[1]) if domains else parse_recipient(rest[1])
        self["address"] = address

    def postOptions(self) -> None:
        super().postOptions()
        action = self["action"]
        configuring = [o for o in CONFIG_OPTIONS if self[o] is not None]
        passwords = [
            o
            for o in ("room-password", "room-password-file", "clear-password")
            if self[o]
        ]
        if (configuring or passwords) and action not in ("create", "config"):
            raise usage.UsageError(
                f"--{(configuring + passwords)[0]} goes with create or config"
            )
        if len(passwords) > 1:
            raise usage.UsageError(
                "give one of --room-password, --room-password-file, --clear-password"
            )
        if self["clear-password"] and action != "config":
            raise usage.UsageError("--clear-password goes with config")
        self["config"] = self._config()
        if self["reason"] is not None and action not in ("kick", "ban"):
            raise usage.UsageError("--reason goes with kick or ban")
        if self["voice"] is not None:
            if action != "role":
                raise usage.UsageError("--voice goes with role")
            self["voice"] = parse_yes_no(self["voice"], "voice")
        if self["role"] is not None and action not in ("role", "who"):
            raise usage.UsageError("--role goes with role or who")
        if action == "role" and self["role"] is None and self["voice"] is None:
            raise usage.UsageError("role needs --role and/or --voice")
        if action == "who" and self["role"] not in (None, "banned", "invited"):
            raise usage.UsageError("who takes --role banned or --role invited")

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self["name"], "topic": self["topic"]}
        for option in ("public", "members-only", "moderated"):
            if self[option] is not None:
                config[option.replace("-", "_")] = parse_yes_no(self[option], option)
        if self["max-members"] is not None:
            text = self["max-members"]
            if not text.isdigit() or len(text) > 12:
                raise usage.UsageError("--max-members must be a whole number")
            config["max_members"] = int(text)
        if self["clear-password"]:
            config["clear_password"] = True
        return config


def room_password(options: RoomOptions) -> str | None:
    """
    The room password C{create} or C{config} sets, read before the
    reactor runs (asked twice on the terminal, so a typo does not lock
    the members out), or L{None}.
    """
    if options["room-password"]:
        return read_password(None, confirm=True)
    if options["room-password-file"]:
        return read_password(
            options["room-password-file"], source="--room-password-file"
        )
    return None


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def settings_json(settings: RoomSettings) -> dict[str, Any]:
    return {
        "room": settings.room,
        "name": settings.name,
        "topic": settings.topic,
        "public": settings.public,
        "members_only": settings.members_only,
        "moderated": settings.moderated,
        "max_members": settings.max_members,
        "password_protected": settings.password_protected,
    }


def settings_text(settings: RoomSettings) -> str:
    """
    A room's configuration, one setting a line.
    """
    rows = [
        ("Room", settings.room),
        ("Name", settings.name),
        ("Topic", settings.topic),
        ("Public", yes_no(settings.public)),
        ("Members-only", yes_no(settings.members_only)),
        ("Moderated", yes_no(settings.moderated)),
        ("Max-members", str(settings.max_members)),
        ("Password", yes_no(settings.password_protected)),
    ]
    return "".join(
        f"{name}: {printable(value)}".rstrip() + "\n" for name, value in rows
    )


def standing_text(standing: Standing) -> str:
    voice = ", with voice" if standing.voice else ""
    return (
        f"{printable(standing.address)} in {printable(standing.room)}: "
        f"{standing.role}{voice}"
    )


def members_text(members: list[Member]) -> str:
    rows = [
        [printable(m.address), printable(m.role), "voice" if m.voice else "-"]
        for m in members
    ]
    return table(["ADDRESS", "ROLE", "VOICE"], rows)


def rooms_text(rooms: list[RoomListing]) -> str:
    rows = [[printable(r.room), printable(r.name)] for r in rooms]
    return table(["ROOM", "NAME"], rows)


async def all_public_rooms(chat: Chat) -> list[RoomListing]:
    """
    Every public room, page after page.
    """
    rooms: list[RoomListing] = []
    start: int | None = 0
    while start is not None:
        page = await chat.list(start, 200)
        rooms += page.rooms
        start = page.next_start
    return rooms


async def room_action(
    reactor: Any, options: RoomOptions, password: str, room_secret: str | None
) -> int:
    action, room, address = options["action"], options["room"], options["address"]
    as_json = options["json"]
    async with connected(reactor, options, password, options["chat-server"]) as client:
        chat = Chat(client)
        if action in ("create", "config"):
            config = {k: v for k, v in options["config"].items() if v is not None}
            if room_secret is not None:
                config["password"] = room_secret
            act = chat.create if action == "create" else chat.config
            settings = await act(room, **config)
            if as_json:
                print_json(settings_json(settings))
            else:
                print(settings_text(settings), end="")
        elif action == "destroy":
            await chat.destroy(room)
            report(as_json, {"room": room, "destroyed": True}, f"{room} destroyed")
        elif action == "decline":
            changed = await chat.decline(room)
            said = f"declined the invitation into {room}"
            if not changed:
                said = f"you were not invited into {room}"
            report(as_json, {"room": room, "changed": changed}, said)
        elif action in ("invite", "unban"):
            act = chat.invite if action == "invite" else chat.unban
            changed = await act(room, address)
            if action == "invite":
                said = f"invited {address} into {room}"
                if not changed:
                    said = f"{address} was invited into {room} already"
            else:
                said = f"lifted the ban on {address} in {room}"
                if not changed:
                    said = f"{address} was not banned in {room}"
            report(
                as_json, {"room": room, "address": address, "changed": changed}, said
            )
        elif action in ("kick", "ban"):
            act = chat.kick if action == "kick" else chat.ban
            await act(room, address, options["reason"])
            done = "kicked" if action == "kick" else "banned"
            report(
                as_json,
                {"room": room, "address": address, action: True},
                f"{done} {address} from {room}",
            )
        elif action == "role":
            standing = await chat.role(room, address, options["role"], options["voice"])
            report(
                as_json,
                {
                    "room": standing.room,
                    "address": standing.address,
                    "role": standing.role,
                    "voice": standing.voice,
                },
                standing_text(standing),
            )
        elif action == "who":
            members = await chat.who(room, options["role"])
            if as_json:
                print_json(
                    {
                        "room": room,
                        "members": [
                            {"address": m.address, "role": m.role, "voice": m.voice}
                            for m in members
                        ],
                    }
                )
            else:
                print(members_text(members), end="")
        elif action == "list":
            rooms = await all_public_rooms(chat)
            if as_json:
                print_json({"rooms": [{"room": r.room, "name": r.name} for r in rooms]})
            elif not rooms:
                print("No public rooms: fmtp room create ROOM --public yes makes one.")
            else:
                print(rooms_text(rooms), end="")
        else:
            mine = await chat.my_rooms()
            if as_json:
                print_json({"rooms": mine})
            elif not mine:
                print("You are in no room: fmtp chat ROOM joins one.")
            else:
                print("".join(f"{printable(r)}\n" for r in mine), end="")
    return EXIT_OK


def report(as_json: bool, value: dict[str, Any], text: str) -> None:
    if as_json:
        print_json(value)
    else:
        print(printable(text))


def room_command(options: RoomOptions) -> int:
    password = login_password(options)
    room_secret = room_password(options)
    return run_on_reactor(
        lambda reactor: room_action(reactor, options, password, room_secret)
    )
