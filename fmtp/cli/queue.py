"""
C{fmtp queue}: what waits in a server's outbound queue, for which domain
and why; make it due now; or drop it.

This works on the store in the data directory, as C{adduser} does, while
the server runs or not.  A running server does not watch the store: what
C{queue retry} makes due is sent at the server's next queue pass, which
starts when its timer for the earliest delivery fires, when one of its
users sends to another domain, or when it starts.
"""

from __future__ import annotations

import math
from typing import Any

from twisted.python import usage

from fmtp import datadir
from fmtp.cli.admin import StoreOptions, data_dir_domain, open_store, parse_domain
from fmtp.cli.options import JSONOption
from fmtp.cli.output import iso_time, local_time, print_json, table
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.status import EXIT_OK, Refused
from fmtp.delivery import QueuedDelivery, RecipientResult, sender_of
from fmtp.errors import FMTPError
from fmtp.federation.bounce import POSTMASTER, make_bounce
from fmtp.keys.keyfile import KeyFileError, load_private_key
from fmtp.keys.signing import DomainSigner
from fmtp.objects import FMTPObject, domain_of

#: Rows read at most for a listing or a drop.
MAX_ROWS = 100_000


class QueueOptions(JSONOption, StoreOptions):
    synopsis = (
        "[--data-dir DIR] [--json] | retry [DOMAIN] | drop ID [DOMAIN] [--no-bounce]"
    )
    longdesc = (
        "List the outbound queue: each message waiting for a domain, its "
        "recipients there, the attempts made, when the next is due and why the "
        "last failed.  'retry' makes them due now (all, or those for DOMAIN): a "
        "running server sends them at its next queue pass, when its timer for the "
        "earliest delivery fires, when a user sends to another domain, or when it "
        "restarts.  'drop' removes a message from the queue (for every domain, "
        "or for DOMAIN) and files a bounce from postmaster in its sender's inbox, "
        "signed with the domain key, as when the queue gives up; --no-bounce "
        "drops it silently."
    )
    examples = (
        "fmtp queue --data-dir /var/lib/fmtp",
        "fmtp queue retry lenore.org",
        "fmtp queue drop 1763800000000.9f53fe42a795.edgar@poe.net lenore.org",
    )
    optParameters = [
        ["key-file", "k", None, "The key to sign bounces with (DATA-DIR/domain.key)."]
    ]
    optFlags = [["no-bounce", None, "Drop without telling the sender."]]

    def parseArgs(self, *args: str) -> None:
        action, rest = (args[0], args[1:]) if args else ("list", ())
        if action == "retry" and len(rest) <= 1:
            self["domain"] = parse_domain(rest[0]) if rest else None
        elif action == "drop" and 1 <= len(rest) <= 2:
            self["id"] = rest[0]
            self["domain"] = parse_domain(rest[1]) if len(rest) == 2 else None
        elif action != "list" or rest:
            raise usage.UsageError(
                "expected no argument, retry [DOMAIN], or drop ID [DOMAIN]"
            )
        self["action"] = action

    def postOptions(self) -> None:
        super().postOptions()
        self["key-file"] = self["key-file"] or datadir.key_path(self["data-dir"])


def delivery_json(row: QueuedDelivery) -> dict[str, Any]:
    return {
        "id": row.object_id,
        "domain": row.domain,
        "recipients": list(row.recipients),
        "queued": iso_time(int(row.created * 1000)),
        "attempts": row.attempts,
        "next_attempt": iso_time(int(row.next_attempt * 1000)),
        "last_error": row.last_error,
    }


def print_queue(rows: list[QueuedDelivery], now: float) -> None:
    if not rows:
        print("The queue is empty.")
        return
    lines = [
        [
            row.domain,
            row.object_id,
            " ".join(row.recipients),
            str(row.attempts),
            "now" if row.next_attempt <= now else local_time(row.next_attempt * 1000),
            row.last_error or "-",
        ]
        for row in rows
    ]
    headings = ["DOMAIN", "ID", "RECIPIENTS", "ATTEMPTS", "NEXT", "LAST ERROR"]
    print(table(headings, lines), end="")
    domains = len({row.domain for row in rows})
    print(f"{len(rows)} waiting, for {domains} domain{'s' if domains > 1 else ''}")


def bounce_for(
    obj: FMTPObject, row: QueuedDelivery, domain: str, signer: DomainSigner, now: float
) -> tuple[str, FMTPObject] | None:
    """
    The bounce telling a local sender that C{row}'s recipients will not
    get C{obj}, and to whom it goes; L{None} where the queue would not
    bounce either (a postmaster's message, a sender of another domain).
    """
    try:
        sender = sender_of(obj)
    except FMTPError:
        return None
    if sender.partition("@")[0] == POSTMASTER or domain_of(sender) != domain:
        return None
    reason = f"dropped from the queue by the administrator of {domain}"
    failures = [RecipientResult(r, 554, reason) for r in row.recipients]
    bounce = make_bounce(obj, row, failures, row.attempts, domain)
    return sender, signer.sign_object(bounce, now)


async def drop(
    store: Any,
    options: QueueOptions,
    domain: str,
    signer: DomainSigner | None,
    now: float,
) -> None:
    """
    C{fmtp queue drop ID [DOMAIN]}: each matching row removed, after its
    bounce is filed (unless C{signer} is L{None}: C{--no-bounce}).
    """
    rows = [
        row
        for row in await store.due_deliveries(math.inf, MAX_ROWS)
        if row.object_id == options["id"] and options["domain"] in (None, row.domain)
    ]
    if not rows:
        where = f" for {options['domain']}" if options["domain"] else ""
        raise Refused(f"nothing queued{where} with id {options['id']}")
    obj = await store.get_object(options["id"])
    for row in rows:
        told = ""
        bounce = None
        if signer is not None and obj is not None:
            bounce = bounce_for(obj, row, domain, signer, now)
        if bounce is not None:
            # Filed before the row goes, as the queue does: a crash in
            # between files it again under the same id, so once.
            sender, message = bounce
            await store.deliver_local(sender, message, False)
            told = f"; bounced to {sender}"
        await store.finish_delivery(row.object_id, row.domain)
        recipients = " ".join(row.recipients)
        print(f"Dropped {row.object_id} for {row.domain} ({recipients}){told}")


async def queue(
    reactor: Any, options: QueueOptions, domain: str, signer: DomainSigner | None
) -> int:
    """
    C{fmtp queue}: list, retry or drop, on the store opened once.
    """
    store = await open_store(reactor, options)
    try:
        now = reactor.seconds()
        if options["action"] == "retry":
            count = await store.make_due(now, options["domain"])
            where = f" for {options['domain']}" if options["domain"] else ""
            print(
                f"{count} deliver{'y' if count == 1 else 'ies'}{where} made due now; "
                "a running server sends them at its next queue pass"
            )
        elif options["action"] == "drop":
            await drop(store, options, domain, signer, now)
        else:
            rows = await store.due_deliveries(math.inf, MAX_ROWS)
            rows.sort(key=lambda row: (row.domain, row.next_attempt, row.object_id))
            if options["json"]:
                print_json({"queue": [delivery_json(row) for row in rows]})
            else:
                print_queue(rows, now)
    finally:
        await store.close()
    return EXIT_OK


def queue_command(options: QueueOptions) -> int:
    domain = data_dir_domain(options)
    signer = None
    if options["action"] == "drop" and not options["no-bounce"]:
        # Read before anything changes: a drop that cannot bounce is
        # refused rather than done silently.
        try:
            signer = DomainSigner(load_private_key(options["key-file"]), domain)
        except (OSError, KeyFileError) as e:
            raise Refused(
                f"cannot sign the bounce with {options['key-file']}: {e} "
                "(give --key-file, or --no-bounce to drop without telling the sender)"
            )
    return run_on_reactor(lambda reactor: queue(reactor, options, domain, signer))
