"""
The schema of the SQL store, as upgrade steps in order.

The schema is versioned with C{PRAGMA user_version}.  L{SCHEMA_STEPS} lists
the upgrade steps in order; step N takes the schema from version N-1 to N.
A later change to the schema appends a step and never edits an old one, so
a file written by any earlier fmtp is brought up to date when opened
(L{fmtp.store.sql.engine.upgrade_schema}).  A new step belongs to one
feature (its tables are that feature's module's); the steps released
before the store was split per feature are kept exactly as they were.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from fmtp.store.sql.engine import SchemaStep


def _execute_all(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    """
    Run each statement in turn.

    Not L{sqlite3.Connection.executescript}: it commits any open
    transaction first, which would break the one-transaction-per-step
    promise of L{upgrade_schema}.
    """
    for statement in statements:
        conn.execute(statement)


def _v1_objects_and_accounts(conn: sqlite3.Connection) -> None:
    """
    Version 1: objects and accounts.

    C{objects.seq} orders listings by first storage: an upsert keeps it, and
    C{AUTOINCREMENT} never reuses the number of a deleted row, so a listing
    position (and any future paging cursor) always means the same place.
    C{owner}, C{public} and C{digest} are derived from the object but kept
    in columns so that listings filter and summarize without decoding
    properties or reading bodies.

    Each listing index ends in C{seq} so that a filtered listing is read
    in order straight from the index, with no sort.  C{public} is left as
    a residual filter: most listings ask for public objects only, so an
    index on it would select little.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE objects (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                owner TEXT NOT NULL,
                public INTEGER NOT NULL CHECK (public IN (0, 1)),
                digest TEXT NOT NULL,
                properties TEXT NOT NULL,
                body BLOB NOT NULL
            )
            """,
            "CREATE INDEX objects_type_seq ON objects (type, seq)",
            "CREATE INDEX objects_owner_seq ON objects (owner, seq)",
            "CREATE INDEX objects_owner_type_seq ON objects (owner, type, seq)",
            """
            CREATE TABLE accounts (
                address TEXT PRIMARY KEY NOT NULL,
                password_hash TEXT NOT NULL,
                created INTEGER NOT NULL
            )
            """,
        ],
    )


def _v2_delivery(conn: sqlite3.Connection) -> None:
    """
    Version 2: the outbound queue, inboxes and approved senders
    (L{fmtp.interfaces.IDeliveryStore}).

    C{queue} has one row per object and destination domain; the object
    itself stays in C{objects}.  Its recipients are a JSON list, since they
    are only ever read together.  C{queue_due} serves both the due batch
    and the earliest due time in order, with no sort (its tail is the tie
    order); C{queue_domain} serves a domain's whole queue, oldest first.

    C{inbox.seq} is the order of arrival and the device's paging cursor;
    C{AUTOINCREMENT} makes it grow across recipients and never reuse the
    number of a dropped entry, so a cursor always means the same place.
    C{sender} is copied from the object (L{fmtp.delivery.sender_of}) so the
    confirm policy's per-sender questions need no JSON decoding.  There is
    no foreign key to C{objects}: an entry outlives a deleted object, to
    keep de-duplicating its id.  C{inbox_recipient_held_seq} reads a
    user's unheld (or held) entries in order straight from the index.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE queue (
                object_id TEXT NOT NULL,
                domain TEXT NOT NULL,
                recipients TEXT NOT NULL,
                created REAL NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt REAL NOT NULL,
                last_error TEXT,
                PRIMARY KEY (object_id, domain)
            )
            """,
            "CREATE INDEX queue_due ON queue (next_attempt, object_id, domain)",
            "CREATE INDEX queue_domain ON queue (domain, created, object_id)",
            """
            CREATE TABLE inbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                recipient TEXT NOT NULL,
                object_id TEXT NOT NULL,
                sender TEXT NOT NULL,
                held INTEGER NOT NULL CHECK (held IN (0, 1)),
                UNIQUE (recipient, object_id)
            )
            """,
            "CREATE INDEX inbox_recipient_held_seq ON inbox (recipient, held, seq)",
            """
            CREATE TABLE approved_senders (
                recipient TEXT NOT NULL,
                sender TEXT NOT NULL,
                PRIMARY KEY (recipient, sender)
            )
            """,
        ],
    )


def _v3_sealing_and_sending(conn: sqlite3.Connection) -> None:
    """
    Version 3: who holds what (DESIGN decision 15), and what was sent.

    C{objects.sealed} marks an object sent or filed for a recipient: it
    never changes again.  C{objects.removed} marks a sealed object its
    owner deleted: hidden from the owner and listings, kept for those who
    hold it.  Objects already queued or filed are sealed by this step.
    C{inbox.removed} marks an entry its recipient removed, kept so that a
    replayed id is not filed again.

    C{sent} records each object queued for a domain, with its digest, for
    as long as the countersign may be asked about it (C{sent_created}
    serves the clean-up); rows for what is queued now are made from the
    queue, so CONFIRM answers for them after the upgrade too.
    C{send_keys} remembers each C{Idempotency-Key} with the message it
    sent.
    """
    _execute_all(
        conn,
        [
            "ALTER TABLE objects ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE objects ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
            """
            UPDATE objects SET sealed = 1
            WHERE id IN (SELECT object_id FROM inbox)
               OR id IN (SELECT object_id FROM queue)
            """,
            "ALTER TABLE inbox ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE sent (
                object_id TEXT NOT NULL,
                domain TEXT NOT NULL,
                digest TEXT NOT NULL,
                created REAL NOT NULL,
                PRIMARY KEY (object_id, domain)
            )
            """,
            "CREATE INDEX sent_created ON sent (created)",
            """
            INSERT INTO sent (object_id, domain, digest, created)
            SELECT queue.object_id, queue.domain, objects.digest, queue.created
            FROM queue JOIN objects ON objects.id = queue.object_id
            """,
            """
            CREATE TABLE send_keys (
                sender TEXT NOT NULL,
                key TEXT NOT NULL,
                request_digest TEXT NOT NULL,
                object_id TEXT NOT NULL,
                results TEXT,
                created REAL NOT NULL,
                PRIMARY KEY (sender, key)
            )
            """,
            "CREATE INDEX send_keys_created ON send_keys (created)",
        ],
    )


def _v4_presence(conn: sqlite3.Connection) -> None:
    """
    Version 4: presence subscriptions (L{fmtp.interfaces.IPresenceStore},
    L{fmtp.store.sql.presence}).

    One row per directed link, from a subscriber to a target, in the state
    its target decided (L{fmtp.store.presence.Link}); no row is
    L{fmtp.store.presence.Link.NONE}.  C{created} is when the row was made,
    what waiting requests are ordered and expired by.  The domains are
    copied from the addresses so that the subscriptions shared with a
    domain are found from an index when the link to it goes down or comes
    back.

    The rows are small and always found by one of their addresses, so the
    table is C{WITHOUT ROWID}, clustered by its primary key: a
    subscriber's links are together.  C{subscriptions_target} serves the
    other side: a target's subscribers (every status change fans out to
    them) in order, with no sort, and its waiting requests.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE subscriptions (
                subscriber TEXT NOT NULL,
                target TEXT NOT NULL,
                state TEXT NOT NULL
                    CHECK (state IN ('pending', 'approved', 'preapproved')),
                created REAL NOT NULL,
                subscriber_domain TEXT NOT NULL,
                target_domain TEXT NOT NULL,
                PRIMARY KEY (subscriber, target)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX subscriptions_target ON subscriptions "
            "(target, state, subscriber)",
            "CREATE INDEX subscriptions_subscriber_domain ON subscriptions "
            "(subscriber_domain)",
            "CREATE INDEX subscriptions_target_domain ON subscriptions (target_domain)",
        ],
    )


def _v5_rooms(conn: sqlite3.Connection) -> None:
    """
    Version 5: chat rooms (L{fmtp.interfaces.IRoomStore},
    L{fmtp.store.sql.rooms}).

    C{rooms} holds the rooms this server is the home of; C{config} is a
    JSON object (L{fmtp.store.rooms.RoomConfig.to_json}) so that a new
    setting needs no schema step.  C{room_tombstones} keeps the address
    of a destroyed room from being taken again C{until} then.

    C{room_members} has one row per address with a standing in a room (a
    member, an invitation, a ban), C{WITHOUT ROWID} so that a room's rows
    are together in its primary key: a message's fan-out reads them in
    one range, and a join reads one row and counts one range.
    C{room_members_address} serves "the rooms of this address".

    C{room_history} is each room's chain: C{(room, seq)} is its primary
    key, so entries are read in order with no sort and no two entries of
    a room share a number; C{(room, object_id)} is unique, so a replay is
    recognised.  A retracted entry keeps C{digest} and C{parent_digest},
    and its C{type}, C{properties} and C{body} become C{NULL}.  It keeps
    its rowid, unlike the small tables, because its rows hold bodies.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE rooms (
                address TEXT PRIMARY KEY NOT NULL,
                creator TEXT NOT NULL,
                config TEXT NOT NULL,
                created REAL NOT NULL
            )
            """,
            """
            CREATE TABLE room_tombstones (
                address TEXT PRIMARY KEY NOT NULL,
                destroyed REAL NOT NULL,
                until REAL NOT NULL
            )
            """,
            """
            CREATE TABLE room_members (
                room TEXT NOT NULL,
                address TEXT NOT NULL,
                role TEXT NOT NULL CHECK (
                    role IN ('owner', 'moderator', 'member', 'banned', 'invited')
                ),
                voice INTEGER NOT NULL CHECK (voice IN (0, 1)),
                since REAL NOT NULL,
                reason TEXT,
                PRIMARY KEY (room, address)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX room_members_address ON room_members (address, room)",
            """
            CREATE TABLE room_history (
                room TEXT NOT NULL,
                seq INTEGER NOT NULL CHECK (seq > 0),
                digest TEXT NOT NULL,
                parent_digest TEXT NOT NULL,
                object_id TEXT NOT NULL,
                type TEXT,
                properties TEXT,
                body BLOB,
                appended REAL NOT NULL,
                retracts INTEGER,
                retracted_by INTEGER,
                PRIMARY KEY (room, seq),
                UNIQUE (room, object_id)
            )
            """,
        ],
    )


def _v6_resumption_tokens(conn: sqlite3.Connection) -> None:
    """
    Version 6: resumption tokens (L{fmtp.interfaces.ITokenStore}, the
    feature module L{fmtp.store.sql.tokens}).

    A token is kept as its SHA-256 (C{token_hash}, hex), never in clear.
    The table keeps its rowid, which orders an account's tokens by when
    they were added (the oldest beyond the account's cap go first);
    C{resumption_tokens_address} serves "the tokens of this address".
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE resumption_tokens (
                token_hash TEXT NOT NULL UNIQUE,
                address TEXT NOT NULL,
                issued REAL NOT NULL,
                expires REAL NOT NULL
            )
            """,
            "CREATE INDEX resumption_tokens_address ON resumption_tokens (address)",
        ],
    )


def _v7_hidden_requests(conn: sqlite3.Connection) -> None:
    """
    Version 7: a subscription request may be I{hidden}
    (L{fmtp.store.presence.Link.HIDDEN}): it waits as any request does,
    but is never put to its target and does not count under the target's
    cap.

    SQLite cannot change a table's C{CHECK}, so the table is made again
    with the new state allowed (the way SQLite's documentation gives for
    changes C{ALTER TABLE} cannot make), every row copied, and its indexes
    made again.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE subscriptions_v7 (
                subscriber TEXT NOT NULL,
                target TEXT NOT NULL,
                state TEXT NOT NULL
                    CHECK (state IN ('pending', 'approved', 'preapproved', 'hidden')),
                created REAL NOT NULL,
                subscriber_domain TEXT NOT NULL,
                target_domain TEXT NOT NULL,
                PRIMARY KEY (subscriber, target)
            ) WITHOUT ROWID
            """,
            "INSERT INTO subscriptions_v7 SELECT subscriber, target, state, created,"
            " subscriber_domain, target_domain FROM subscriptions",
            "DROP TABLE subscriptions",
            "ALTER TABLE subscriptions_v7 RENAME TO subscriptions",
            "CREATE INDEX subscriptions_target ON subscriptions "
            "(target, state, subscriber)",
            "CREATE INDEX subscriptions_subscriber_domain ON subscriptions "
            "(subscriber_domain)",
            "CREATE INDEX subscriptions_target_domain ON subscriptions (target_domain)",
        ],
    )


def _v8_bridges(conn: sqlite3.Connection) -> None:
    """
    Version 8: ISP bridges (L{fmtp.interfaces.IBridgeStore}, the feature
    module L{fmtp.store.sql.bridges}).

    C{secret} is the HMAC key in clear, as it must be to check a MAC: the
    file is as secret as the domain key beside it.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE bridges (
                name TEXT PRIMARY KEY,
                users TEXT NOT NULL,
                secret TEXT NOT NULL,
                created REAL NOT NULL
            ) WITHOUT ROWID
            """,
        ],
    )


def _v9_bridge_sources(conn: sqlite3.Connection) -> None:
    """
    Version 9: a bridge's source networks and its own rate
    (L{fmtp.store.bridges.Bridge.sources}, C{rate}).  A bridge added before
    has no source, so its datagrams stay under the per-source limit.

    C{sources} is the networks separated by spaces.
    """
    _execute_all(
        conn,
        [
            "ALTER TABLE bridges ADD COLUMN sources TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE bridges ADD COLUMN rate INTEGER NOT NULL DEFAULT 5000",
        ],
    )


def _v10_subscription_actions(conn: sqlite3.Connection) -> None:
    """
    Version 10: the last subscription action each remote user took about
    each local one (L{fmtp.interfaces.IPresenceStore.last_action}), so
    that one delivered again is refused after a restart too; swept by
    C{ms} once older than any signature is accepted.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE subscription_actions (
                actor TEXT NOT NULL,
                user TEXT NOT NULL,
                ms INTEGER NOT NULL,
                object_id TEXT NOT NULL,
                PRIMARY KEY (actor, user)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX subscription_actions_ms ON subscription_actions (ms)",
        ],
    )


#: The upgrade steps, in order: C{SCHEMA_STEPS[N - 1]} takes a file from
#: version N-1 to N.  Append new steps; never change a released one.
SCHEMA_STEPS: Sequence[SchemaStep] = (
    _v1_objects_and_accounts,
    _v2_delivery,
    _v3_sealing_and_sending,
    _v4_presence,
    _v5_rooms,
    _v6_resumption_tokens,
    _v7_hidden_requests,
    _v8_bridges,
    _v9_bridge_sources,
    _v10_subscription_actions,
)

#: The schema version this code writes.
SCHEMA_VERSION = len(SCHEMA_STEPS)
