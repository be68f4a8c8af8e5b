"""
The chat service: the rooms a server is the home of, as its chat
commands use them.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IChatService(Interface):
    """
    The rooms of one domain (doc/protocol.md section 10), for its local
    users: every method acts for C{user}, the logged-in address, and
    checks what that user may do (L{fmtp.protocols.chat.rules}).

    Coroutine methods fail with an L{fmtp.errors.FMTPError} whose code is
    the reply's: L{fmtp.store.rooms.RoomNotFound} (550) for a room that
    does not exist, and alike for a private room C{user} is not in;
    L{fmtp.errors.Forbidden} (554) for what the rules refuse;
    L{fmtp.errors.TooManyRequests} (429) over a rate.
    """

    live = Attribute("The sessions that entered each room (LiveRooms).")

    def create(user, room, change):
        """
        Create C{room} with C{user} as its owner, configured by
        C{change} (a L{fmtp.protocols.chat.lines.ConfigChange}).

        @return: the L{fmtp.store.rooms.Room}.
        """

    def configure(user, room, change):
        """
        Change the room's configuration (owners only), or, for an empty
        C{change}, read it (members).

        @return: the L{fmtp.store.rooms.RoomConfig} afterwards.
        """

    def destroy(user, room):
        """
        Destroy the room (owners only), leaving a tombstone on its
        address; the sessions in it are told and stop.
        """

    def public_rooms(start, limit):
        """
        @return: a page of the public rooms, by address.
        """

    def my_rooms(user):
        """
        @return: the addresses of the rooms C{user} is a member of.
        """

    def join(user, room, password):
        """
        Make C{user} a member (checking the password, the ban, the
        invitation, the size and the join rate).

        @return: its L{fmtp.store.rooms.Member}.
        """

    def leave(user, room):
        """
        C{user} stops being a member (not the room's only owner).
        """

    def decline(user, room):
        """
        Turn down C{user}'s invitation into C{room}.

        @return: a L{Deferred} firing with whether they were invited.
        """

    def invite(user, room, address):
        """
        Invite C{address} (moderators); it is told if online.

        @return: whether an invitation was recorded.
        """

    def kick(user, room, address, reason):
        """
        Remove the member C{address}; its sessions in the room stop.
        """

    def ban(user, room, address, reason):
        """
        Ban C{address}, a member or not; its sessions in the room stop.
        C{*@DOMAIN} bans every address of DOMAIN (not the room's own),
        removing its members as a ban of each would.
        """

    def unban(user, room, address):
        """
        Lift a ban (moderators): of an address, or of C{*@DOMAIN}.

        @return: whether C{address} was banned.
        """

    def set_role(user, room, address, role, voice):
        """
        Give a member a role and voice (L{None}: unchanged).

        @return: the member's new L{fmtp.store.rooms.Member}.
        """

    def who(user, room, role):
        """
        The members (for members only); or, given a C{role} (banned,
        invited), the addresses holding it (for moderators).

        @return: a list of L{fmtp.store.rooms.Member}.
        """

    def say(user, room, body, fmt, posted=None):
        """
        Post a line: signed, linked to the head, appended and pushed (to
        the sessions that entered the room, and to the other domains with
        members in it).

        @param posted: for a C{user} of another domain, the line as their
            server signed it (L{fmtp.protocols.chat.lines.posted_line}),
            its signature checked: the entry keeps its id, and the
            signature as C{Poster-Signature}.
        @return: its L{fmtp.store.rooms.HistoryEntry}.
        """

    def topic(user, room, topic):
        """
        Set the topic (moderators): a configuration change and an entry.

        @return: the entry's L{fmtp.store.rooms.HistoryEntry}.
        """

    def retract(user, room, seq):
        """
        Retract line C{seq} (its poster or a moderator) with a signed
        tombstone that keeps the chain whole.

        @return: the tombstone's L{fmtp.store.rooms.HistoryEntry}.
        """

    def history(user, room, since, limit):
        """
        @return: C{(entries, head)}: the entries after C{since}, at most
            C{limit}, and the number of the room's last entry.
        """

    def enter(session, room, since):
        """
        Send the session (an L{fmtp.interfaces.ISession}) the entries
        after C{since}, then the room's lines live: no gap, no duplicate.

        @return: the number of the last entry sent to catch up.
        """

    def exit(session, room):
        """
        The session no longer receives the room's lines.

        @return: whether it had entered.
        """

    def session_ended(session):
        """
        A chat session's login ended: it leaves the rooms it entered.
        """
