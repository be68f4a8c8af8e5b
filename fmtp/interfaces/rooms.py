"""
The store of chat rooms.
"""

from __future__ import annotations

from zope.interface import Interface


class IRoomStore(Interface):
    """
    Durable storage of the chat rooms this server is the home of (the
    chat protocol, issue 11): each room's configuration, its members and
    their roles, and its history; and the tombstones of destroyed rooms.

    Membership is persistent, not tied to being online, and an address of
    any domain may hold it: remote members are kept here as local ones
    are.  The values, roles and rules are L{fmtp.store.rooms}'s.

    A room's history is one ordered, hash-linked sequence: entries are
    numbered from 1 with no gaps, and each entry's object carries the
    digest of the entry before it as its C{Parent-Digest}.  L{append}
    checks that link and numbers the entry in one step, so two appends
    that both follow the same entry cannot both succeed: the chain never
    forks (the loser gets L{fmtp.store.rooms.HistoryConflict} with the new
    head, and links its entry again).  A retraction is a new entry, a
    tombstone; the retracted entry loses its object but keeps its digests,
    so the chain still verifies end to end
    (L{fmtp.store.rooms.verify_chain}).  Since numbers have no gaps, a
    page of history that starts after entry N is both "since N" and
    "Start: N".

    A room may ban a whole domain (L{ban_domain}): the ban is kept as the
    standing of the address C{*@DOMAIN}
    (L{fmtp.store.rooms.domain_ban_address}), which no user has, so that
    it is listed with the other bans, lifted by L{unban} and destroyed
    with the room; and every read of an address's standing (L{member},
    and the checks of L{join} and L{invite}) reads its domain's ban in the
    same step (L{fmtp.store.rooms.standing_with}).

    Sizes: L{join} reads the joiner's own row and the room's member count
    and writes one row, whatever the size of the room; L{members}, what
    each message fans out to, is one read.

    Privacy: L{members} is for the room's members (the protocol checks
    who asks), and L{rooms_of} for the address it is about.

    Every method returns a L{Deferred}; one from a write fires only once
    the write is durable.  Addresses must be in normal form
    (L{fmtp.objects.normalize_address}; a room's is C{room@domain}), times
    are seconds since the epoch from the caller's clock; a bad argument
    fails with L{ValueError}, changing nothing.  A call about a room that
    does not exist fails with L{fmtp.store.rooms.RoomNotFound}, except
    L{get_room}, L{destroy_room} and L{rooms_of}.
    """

    def create_room(room, creator, config, now):
        """
        Create a room with C{creator} as its owner (a member with
        L{fmtp.store.rooms.Role.OWNER}), in one step.

        @param config: its L{fmtp.store.rooms.RoomConfig}.
        @return: a L{Deferred} that fires with the new
            L{fmtp.store.rooms.Room}, or fails with
            L{fmtp.store.rooms.RoomExists} if a room has that address, or a
            room destroyed there is still held by its tombstone at C{now}.
        """

    def get_room(room):
        """
        @return: a L{Deferred} that fires with the
            L{fmtp.store.rooms.Room}, or L{None} if there is none.
        """

    def configure_room(room, config):
        """
        Replace a room's configuration.  A smaller C{max_members} removes
        nobody; it stops joins until the room is smaller.

        @return: a L{Deferred} that fires with L{None} once durable.
        """

    def destroy_room(room, now, hold_until):
        """
        Destroy a room with its members and history, in one step, leaving a
        tombstone that keeps its address from being taken again before
        C{hold_until}.

        @return: a L{Deferred} that fires with C{True}, or C{False} (and
            nothing done) if there was no such room.
        """

    def forget_tombstones(now):
        """
        Forget the tombstones that no longer hold their address at C{now}.

        @return: a L{Deferred} that fires with the number forgotten.
        """

    def join(room, address, now, voice=False):
        """
        Make C{address} a member (L{fmtp.store.rooms.Role.MEMBER}, with
        C{voice}), in one step with the checks of
        L{fmtp.store.rooms.join_role}: a ban (of the address or of its
        domain), a members-only room without
        an invitation (an invitation is used up), and C{max_members}.  The
        password of a passworded room is the caller's to check before.
        Joining again changes nothing.

        @return: a L{Deferred} that fires with the address's
            L{fmtp.store.rooms.Member} afterwards, or fails with
            L{fmtp.store.rooms.MemberBanned},
            L{fmtp.store.rooms.InvitationRequired} or
            L{fmtp.store.rooms.RoomFull}, nothing changed.
        """

    def invite(room, address, now):
        """
        Invite C{address}: it may then join a members-only room.

        @return: a L{Deferred} that fires with C{True} if an invitation was
            recorded, C{False} if C{address} is a member or invited
            already; or fails with L{fmtp.store.rooms.MemberBanned}.
        """

    def leave(room, address):
        """
        C{address} stops being a member, or its invitation goes (a leave,
        a kick).  A ban stays: see L{unban}; to remove only an invitation,
        see L{decline}.

        @return: a L{Deferred} that fires with C{True} if a membership or
            an invitation was removed, C{False} otherwise.
        """

    def decline(room, address):
        """
        C{address}'s invitation goes, and nothing else: if it joined
        meanwhile (with the invitation), it stays a member.

        @return: a L{Deferred} that fires with C{True} if an invitation
            was removed, C{False} otherwise.
        """

    def set_role(room, address, role, voice, now, reason=None):
        """
        Give C{address} a role (owner, moderator, member, or banned with a
        C{reason}) and C{voice}, whether or not it was a member: an owner
        adds a member or bans an address that never joined.  A ban ends a
        membership.  A member keeps the time it joined
        (L{fmtp.store.rooms.with_role}).  C{max_members} is not checked:
        the caller acts for an owner or a moderator.

        @param role: a L{fmtp.store.rooms.Role} other than C{INVITED}.
        @return: a L{Deferred} that fires with the standing before, a
            L{fmtp.store.rooms.Member} or L{None}.
        """

    def ban_domain(room, domain, now, reason=None):
        """
        Ban every address of C{domain} (in normal form; that domain only,
        not its subdomains), with C{reason}, in one step: the ban is kept
        as the standing of C{*@DOMAIN}, and the memberships and
        invitations of the domain's addresses end (their own bans stay).
        Whether the domain may be banned is the caller's to decide.

        @return: a L{Deferred} that fires with the L{list} of the
            L{fmtp.store.rooms.Member}s removed (members and invitations),
            by ascending address.
        """

    def unban(room, address):
        """
        Lift a ban: of an address, or of a whole domain given its
        C{*@DOMAIN} address.

        @return: a L{Deferred} that fires with C{True} if C{address} was
            banned, C{False} otherwise.
        """

    def member(room, address):
        """
        C{address}'s standing in the room, whatever it is: if the room
        bans C{address}'s domain, that ban (a L{fmtp.store.rooms.Member}
        whose address is C{*@DOMAIN}), unless the address has a ban of
        its own.

        @return: a L{Deferred} that fires with a
            L{fmtp.store.rooms.Member}, or L{None}.
        """

    def members(room, role=None):
        """
        The room's members (owners, moderators and members), in one read:
        what each message fans out to; or, given a C{role}, the addresses
        that hold it (the banned, the invited).

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.rooms.Member}, by ascending address.
        """

    def rooms_of(address):
        """
        The rooms C{address} is a member of (not those it is invited to or
        banned from), to show to that address only.

        @return: a L{Deferred} that fires with a L{list} of room
            addresses, in ascending order.
        """

    def public_rooms(start, limit):
        """
        The public rooms (C{config.public}), what anyone may list: a page
        of at most C{limit} after skipping C{start}, by ascending address.

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.rooms.Room}; or fails with L{ValueError} for a
            C{start} or C{limit} that is not a non-negative integer.
        """

    def append(room, obj, now):
        """
        Append C{obj} to the room's history as its next entry, checking in
        the same step that its C{Parent-Digest} is the digest of the last
        entry (absent or empty for the first entry).

        An object whose id is in the history already is a replay: nothing
        changes.

        @param obj: the L{fmtp.objects.FMTPObject}, as it is to be kept
            and verified (its digest is the entry's).
        @return: a L{Deferred} that fires with the entry's C{seq}, or
            L{None} for a replay; or fails with
            L{fmtp.store.rooms.HistoryConflict} (the chain moved on),
            L{fmtp.errors.ObjectSealed} (an entry of that id with other
            content), nothing appended.
        """

    def retract(room, seq, tombstone, now):
        """
        Retract entry C{seq}: append C{tombstone} (linked to the last
        entry, as for L{append}) and remove the retracted entry's object,
        keeping its digests, in one step.  Who may retract is the
        caller's to decide.

        @return: a L{Deferred} that fires with the tombstone's C{seq}, or
            L{None} if the tombstone was appended before (a replay); or
            fails as L{append} does, or with L{fmtp.errors.NotFound} if
            there is no entry C{seq} holding a message (none, retracted
            already, or a tombstone), nothing changed.
        """

    def history(room, since, limit):
        """
        Page through the room's history, oldest first: the entries after
        entry C{since} (0 for the first page), at most C{limit}.

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.rooms.HistoryEntry} in ascending C{seq}; or fails
            with L{ValueError} for a C{since} or C{limit} that is not a
            non-negative integer.
        """

    def head(room):
        """
        The room's last entry, which the next one must follow.

        @return: a L{Deferred} that fires with C{(seq, digest)}, or
            L{fmtp.store.rooms.EMPTY_HEAD} for an empty history.
        """
