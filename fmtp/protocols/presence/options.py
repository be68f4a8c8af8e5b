"""
The server options of the presence protocol (C{--presence-*}), kept with
the protocol they tune: the server's options list them, and hand the
plugin the L{PresenceSettings} they make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from fmtp.options import seconds_option, whole_option
from fmtp.protocols.presence.service import DEFAULT_SETTINGS, PresenceSettings

#: The C{optParameters} rows of the presence options.
PRESENCE_PARAMETERS = [
    [
        "presence-grace",
        None,
        f"{DEFAULT_SETTINGS.grace_period:g}",
        "Seconds a presence session whose connection was lost (without "
        "LOGOUT or QUIT) still shows its status, so that a client "
        "reconnecting in time shows no offline blip; 0 to 3600.",
    ],
    [
        "presence-max-pending",
        None,
        str(DEFAULT_SETTINGS.max_pending),
        "Most presence subscription requests waiting for an answer, from "
        "one user (more are refused, 429) and put to one user (more wait "
        "unseen). 1 to 100000.",
    ],
    [
        "presence-request-days",
        None,
        f"{DEFAULT_SETTINGS.request_lifetime / 86400:.0f}",
        "Days a presence subscription request waits for an answer before "
        "it is forgotten (its asker may ask again); 1 to 3650.",
    ],
    [
        "presence-remote-refresh",
        None,
        f"{DEFAULT_SETTINGS.remote_refresh:g}",
        "Seconds between two questions to each domain whose users' "
        "presence this server's users follow; 1 to 3600.",
    ],
    [
        "presence-remote-max-pending",
        None,
        str(DEFAULT_SETTINGS.remote_max_pending),
        "Most subscription requests from one other domain that may wait "
        "for one user (more are refused for now, 429, and retried by that "
        "domain's queue). 1 to 100000.",
    ],
    [
        "presence-remote-timeout",
        None,
        f"{DEFAULT_SETTINGS.remote_timeout:g}",
        "Seconds a domain not heard from keeps its users' presence; then "
        "they show unknown. At least twice the refresh, at most 86400.",
    ],
]


def presence_settings_of(options: Mapping[str, str]) -> PresenceSettings:
    """
    The presence plugin's settings from the server's parsed options.

    @raise usage.UsageError: naming the option that is wrong.
    """
    grace = seconds_option(options, "presence-grace", 0, 3600)
    max_pending = whole_option(options, "presence-max-pending", 1, 100_000)
    request_days = whole_option(options, "presence-request-days", 1, 3650)
    remote_pending = whole_option(options, "presence-remote-max-pending", 1, 100_000)
    refresh = seconds_option(options, "presence-remote-refresh", 1, 3600)
    timeout = seconds_option(options, "presence-remote-timeout", 2 * refresh)
    return replace(
        DEFAULT_SETTINGS,
        grace_period=grace,
        max_pending=max_pending,
        request_lifetime=request_days * 86400.0,
        remote_max_pending=remote_pending,
        remote_refresh=refresh,
        remote_timeout=timeout,
    )
