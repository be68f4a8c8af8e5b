"""
The server options of the chat protocol (C{--chat-*}), kept with the
protocol they tune: the server's options list them, and hand the plugin
the L{ChatSettings} they make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from fmtp.options import whole_option
from fmtp.protocols.chat.settings import DEFAULT_SETTINGS, ChatSettings

#: The C{optParameters} rows of the chat options.
CHAT_PARAMETERS = [
    [
        "chat-max-members",
        None,
        str(DEFAULT_SETTINGS.max_members),
        "Most members a chat room may take (its owner may set fewer); 1 to 1000000.",
    ],
    [
        "chat-member-rate",
        None,
        f"{DEFAULT_SETTINGS.say_rate * 60:g}",
        "Lines a minute one member may post in one room, after a burst of "
        f"{DEFAULT_SETTINGS.say_burst:g} (moderators and owners are exempt); "
        "1 to 6000.",
    ],
    [
        "chat-room-rate",
        None,
        f"{DEFAULT_SETTINGS.room_rate * 60:g}",
        "Lines a minute one room takes from its members, after a burst of "
        f"{DEFAULT_SETTINGS.room_burst:g}; 1 to 600000.",
    ],
    [
        "chat-user-rate",
        None,
        f"{DEFAULT_SETTINGS.user_rate * 60:g}",
        "Lines a minute one user may post in all rooms together, whatever "
        f"their role, after a burst of {DEFAULT_SETTINGS.user_burst:g}; "
        "1 to 600000.",
    ],
    [
        "chat-join-rate",
        None,
        f"{DEFAULT_SETTINGS.join_rate * 60:g}",
        "JOINs, CREATEs and room passwords set a minute per user, after a "
        f"burst of {DEFAULT_SETTINGS.join_burst:g}, and as many INVITEs "
        "and BANs of non-members; "
        "1 to 6000.",
    ],
    [
        "chat-max-line",
        None,
        str(DEFAULT_SETTINGS.max_body),
        "Largest chat line, in bytes; 1 to 65536.",
    ],
    [
        "chat-remote-rate",
        None,
        f"{DEFAULT_SETTINGS.remote_rate * 60:g}",
        "Requests a minute another domain's server may make on this "
        "server's rooms for its users, after a burst of "
        f"{DEFAULT_SETTINGS.remote_burst:g}; 1 to 600000.",
    ],
    [
        "chat-hold-days",
        None,
        f"{DEFAULT_SETTINGS.tombstone_hold / 86400:.0f}",
        "Days a destroyed room's address stays taken; 0 to 3650.",
    ],
]


def chat_settings_of(options: Mapping[str, str]) -> ChatSettings:
    """
    The chat plugin's settings from the server's parsed options.

    @raise usage.UsageError: naming the option that is wrong.
    """
    return replace(
        DEFAULT_SETTINGS,
        max_members=whole_option(options, "chat-max-members", 1, 1_000_000),
        say_rate=whole_option(options, "chat-member-rate", 1, 6000) / 60,
        room_rate=whole_option(options, "chat-room-rate", 1, 600_000) / 60,
        user_rate=whole_option(options, "chat-user-rate", 1, 600_000) / 60,
        join_rate=whole_option(options, "chat-join-rate", 1, 6000) / 60,
        max_body=whole_option(options, "chat-max-line", 1, 65536),
        remote_rate=whole_option(options, "chat-remote-rate", 1, 600_000) / 60,
        tombstone_hold=whole_option(options, "chat-hold-days", 0, 3650) * 86400.0,
    )
