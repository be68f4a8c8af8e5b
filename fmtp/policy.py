"""
What a user accepts, read from their user object (DESIGN, decision 9).

C{Blacklist} and C{Whitelist} hold space-separated address patterns (C{*}
matches any run of characters: C{*@spam.example}); the whitelist wins.
C{Policy} says what happens to everyone else: C{accept}, C{reject}, or
C{confirm}, which holds a first message until the user approves its
sender.  C{Format} lists the body formats the user accepts; HTML and
scripts are never among them.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping

#: Body formats a message may declare in its C{Format} property.
KNOWN_FORMATS = frozenset({"plain", "bbcode", "markdown"})
#: Formats refused whatever a user says: they can carry scripts.
FORBIDDEN_FORMATS = frozenset({"html", "javascript", "script"})


class Decision(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    HOLD = "hold"


def matches(address: str, patterns: str) -> bool:
    """
    Whether C{address} matches any of the space-separated C{patterns}.

    Matching is case-insensitive and C{*} is the only wildcard (C{?} and
    C{[} are taken literally), so a pattern means what an admin reading
    it expects.
    """
    address = address.lower()
    for pattern in patterns.split():
        escaped = pattern.lower().replace("[", "[[]").replace("?", "[?]")
        if fnmatch.fnmatchcase(address, escaped):
            return True
    return False


def decide(profile: Mapping[str, str], sender: str, approved: bool) -> Decision:
    """
    What to do with a message from C{sender} for the user whose user object
    properties are C{profile}.

    @param approved: whether the user has approved C{sender} before (for
        C{Policy: confirm}).
    """
    if matches(sender, profile.get("Whitelist", "")):
        return Decision.ACCEPT
    if matches(sender, profile.get("Blacklist", "")):
        return Decision.REJECT
    policy = profile.get("Policy", "accept").strip().lower()
    if policy == "reject":
        return Decision.REJECT
    if policy == "confirm" and not approved:
        return Decision.HOLD
    return Decision.ACCEPT


def format_refusal(
    profile: Mapping[str, str], message_format: str | None
) -> str | None:
    """
    Why a message in C{message_format} may not reach this user, or L{None}
    if it may.
    """
    declared = (message_format or "plain").strip().lower()
    if declared in FORBIDDEN_FORMATS:
        return f"{declared} is never accepted: send plain text, BBCode or Markdown"
    if declared not in KNOWN_FORMATS:
        return f"unknown format {declared}: send plain, bbcode or markdown"
    accepted = profile.get("Format", "").lower().split() or KNOWN_FORMATS
    if declared not in accepted:
        return f"the recipient does not accept {declared}"
    return None
