"""
C{fmtp send|reply|inbox|held|approve|refuse}: messages, through
L{fmtp.client.Client}.

A send is named by an C{Idempotency-Key} (doc/protocol.md 4.4): if the
connection drops or the reply does not come in time, the command
connects again and sends once more with the same key, which the server
answers with the message it already sent, if it did; so a message is
never sent twice, and not lost to one dropped connection.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.python import usage

from fmtp.attachments import Attachment
from fmtp.cli.compose import CHUNK, attachment_spec, read_attachments, read_text
from fmtp.cli.config import ClientOptions, login_password
from fmtp.cli.options import JSONOption
from fmtp.cli.output import (
    Progress,
    id_time,
    iso_time,
    local_time,
    print_json,
    printable,
    size_text,
    table,
)
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.session import connected, message_id
from fmtp.cli.status import EXIT_OK, Refused, Unreachable
from fmtp.client import Client, ConnectionLost, ReplyError, ReplyTimeout, SendResult
from fmtp.delivery import sender_of
from fmtp.errors import FMTPError, InvalidAddress
from fmtp.objects import FMTPObject, addresses_in, domain_of, normalize_address

#: Inbox entries whose subjects are asked for at once.
BATCH = 32
#: The most entries a FETCH returns.
MAX_PAGE = 200


def parse_recipient(text: str) -> str:
    try:
        return normalize_address(text)
    except InvalidAddress as e:
        raise usage.UsageError(e.message)


class ComposeOptions(JSONOption, ClientOptions):
    """
    What C{send} and C{reply} share: the body, attachments, the key.
    """

    needs_account = True
    optParameters = [
        ["subject", None, None, "The subject."],
        ["body", None, None, "The text (default: read from standard input)."],
        [
            "key",
            None,
            None,
            "The Idempotency-Key (default: a new one): a send repeated with "
            "the same key and message is sent once.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["attach"] = []

    def opt_attach(self, spec: str) -> None:
        """
        Attach a file, FILE or FILE:TYPE to name its media type (repeatable).
        """
        self["attach"].append(attachment_spec(spec))


class SendOptions(ComposeOptions):
    synopsis = (
        "[--subject S] [--parent ID] [--attach FILE[:TYPE]]... [--body TEXT] TO..."
    )
    longdesc = (
        "Send a message to one or more addresses, of any domain.  The text is "
        "--body, or standard input.  Each --attach carries a file, named by its "
        "base name, its media type guessed from its name unless given as "
        "FILE:TYPE.  Prints the message's id and what happened for each local "
        "recipient (others are queued for their domain).  If the connection drops "
        "or the reply is late, the send is repeated once with the same "
        "Idempotency-Key, so the message is never sent twice."
    )
    examples = (
        "echo 'Quoth the raven' | fmtp send lost@lenore.org --subject Nevermore",
        "fmtp send annabel@poe.net --body 'See the picture' --attach raven.png",
        "fmtp send annabel@poe.net --attach notes.txt:text/markdown < letter.txt",
    )
    optParameters = [["parent", None, None, "The id of the message this answers."]]

    def parseArgs(self, *recipients: str) -> None:
        if not recipients:
            raise usage.UsageError("name at least one recipient")
        self["to"] = [parse_recipient(address) for address in recipients]


class ReplyOptions(ComposeOptions):
    synopsis = "[--all] [--subject S] [--attach FILE[:TYPE]]... [--body TEXT] MESSAGE"
    longdesc = (
        "Answer a message, named by its id or by its number in fmtp inbox (the "
        "SEQ column): to its sender (and with --all, to its other "
        "recipients too), with Re: its subject, in its thread: the reply names "
        "it as its Parent, with its digest (Parent-Digest), so the thread is a "
        "hash-linked chain."
    )
    examples = (
        "fmtp reply 3 --body 'Nevermore'",
        "fmtp reply 1763800000000.9f53fe42a795.lost@lenore.org --body 'Nevermore'",
        "fmtp reply --all 1763800000000.9f53fe42a795.lost@lenore.org < answer.txt",
    )
    optFlags = [["all", "a", "Answer every recipient, not only the sender."]]

    def parseArgs(self, parent: str) -> None:
        self["id"] = parent


def size_limits(
    capa: dict[str, str], text: bytes, attachments: list[Attachment]
) -> None:
    """
    Refuse a message larger than the server takes, before sending it.
    """
    size = len(text) + sum(a.size for a in attachments)
    most = capa.get("Max-Body", "")
    if most.isdigit() and size > int(most):
        raise Refused(
            f"the message is {size_text(size)}; the server takes at most "
            f"{size_text(int(most))} (its Max-Body)"
        )
    most = capa.get("Max-Attachments", "")
    if most.isdigit() and len(attachments) > int(most):
        raise Refused(f"the server takes at most {most} attachments a message")


def reply_recipients(parent: FMTPObject, me: str, everyone: bool) -> list[str]:
    """
    Whom a reply goes to: the parent's sender, and with C{everyone} its
    other recipients, without the replying user (unless nobody is left).
    """
    try:
        recipients = [sender_of(parent)]
    except FMTPError:
        raise Refused(f"{parent.id} names no sender to answer") from None
    if everyone:
        recipients += addresses_in(parent.properties.get("To", ""))
    answered = [r for r in dict.fromkeys(recipients) if r != me]
    return answered or [me]


def reply_subject(parent: FMTPObject) -> str | None:
    subject = parent.properties.get("Subject")
    if subject is None or subject.lower().startswith("re:"):
        return subject
    return f"Re: {subject}"


async def send_message(
    reactor: Any,
    options: ComposeOptions,
    password: str,
    text: bytes,
    attachments: list[Attachment],
) -> int:
    """
    C{fmtp send} and C{fmtp reply}: send, once more with the same key if
    the first try got no answer, and print what happened.
    """
    key = options["key"] or uuid.uuid4().hex
    sent = None
    async with connected(reactor, options, password) as client:
        size_limits(await client.capa(), text, attachments)
        parent: FMTPObject | str | None = options.get("parent")
        to = options.get("to")
        subject = options["subject"]
        if options.get("id"):
            parent = await client.get(await message_id(client, options["id"]))
            to = reply_recipients(parent, client.address, options["all"])
            subject = subject if subject is not None else reply_subject(parent)
        call = dict(subject=subject, parent=parent, attachments=attachments, key=key)
        try:
            sent = await sending(client, to, text, call, options)
        except (ReplyTimeout, ConnectionLost):
            pass
    if sent is None:
        if sys.stderr.isatty():
            print("No answer; sending again with the same key.", file=sys.stderr)
        try:
            async with connected(reactor, options, password) as client:
                sent = await sending(client, to, text, call, options)
        except Unreachable as e:
            raise Unreachable(
                f"{e.message}, twice; the message may have been sent: repeat with "
                f"--key {key} to send it at most once"
            ) from None
    return print_sent(sent, to, options["json"])


async def sending(
    client: Client, to: list[str], text: bytes, call: dict, options: ComposeOptions
) -> SendResult:
    """
    One try of the send, with a note on a terminal while a large message
    travels.
    """
    size = len(text) + sum(a.size for a in call["attachments"])
    progress = Progress("sending", not options["json"])
    if size >= CHUNK:
        progress.note(f"{size_text(size)}, waiting for the server")
    try:
        return await client.send(to, text, **call)
    finally:
        progress.done()


def print_sent(sent: SendResult, to: list[str], as_json: bool) -> int:
    """
    The sent message's id, and what happened for each recipient: the
    server's answer for a local one, "queued" for one of another domain.

    @raise Refused: if a local recipient refused it (status 1: a script
        must not take the message for delivered), after printing.
    """
    answered = {result.address for result in sent.results}
    queued = [address for address in to if address not in answered]
    failed = [result for result in sent.results if not 200 <= result.code < 300]
    if as_json:
        print_json(
            {
                "id": sent.id,
                "digest": sent.digest,
                "key": sent.key,
                "results": [
                    {"address": r.address, "code": r.code, "text": r.text}
                    for r in sent.results
                ],
                "queued": queued,
            }
        )
    else:
        print(f"Sent {sent.id}")
        rows = [[r.address, f"{r.code} {r.text}"] for r in sent.results]
        rows += [[a, f"queued for {domain_of(a)}"] for a in queued]
        print(table(["TO", "RESULT"], rows), end="")
    if failed:
        count = len(sent.results)
        raise Refused(
            f"not delivered to {len(failed)} of {count} local "
            f"recipient{'s' if count > 1 else ''}"
        )
    return EXIT_OK


def compose_command(options: ComposeOptions) -> int:
    """
    Run C{fmtp send} or C{fmtp reply}: the password, the text and the
    files are read first, then the reactor runs.
    """
    password = login_password(options)
    text = read_text(options)
    attachments = read_attachments(options)
    return run_on_reactor(
        lambda reactor: send_message(reactor, options, password, text, attachments)
    )


class InboxOptions(JSONOption, ClientOptions):
    synopsis = "[--since N] [--limit N] [--json]"
    longdesc = (
        "List the messages in your inbox, oldest first: their sequence number, "
        "date, sender and subject.  --since N lists those after number N (as "
        "the last line says, to read on); read one with fmtp read SEQ."
    )
    examples = ("fmtp inbox", "fmtp inbox --since 120 --limit 20 --json")
    needs_account = True
    optParameters = [
        ["since", None, "0", "Only messages after this sequence number."],
        ["limit", None, "50", "List at most this many."],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        for name, least in (("since", 0), ("limit", 1)):
            value = self[name]
            if not (value.isascii() and value.isdigit()) or int(value) < least:
                raise usage.UsageError(f"--{name} must be a whole number >= {least}")
            self[name] = int(value)


async def subject_of(client: Client, object_id: str) -> str:
    """
    A message's subject, or why it cannot be read.
    """
    try:
        message = await client.get(object_id)
    except ReplyError as e:
        return f"(unreadable: {e.code} {e.text})"
    return message.properties.get("Subject", "")


async def subjects(client: Client, ids: list[str], progress: Progress) -> list[str]:
    """
    The subject of each message, asked in batches: pipelined, but never
    more at once than a server serves from one connection.
    """
    found: list[str] = []
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        try:
            found += await gatherResults(
                [Deferred.fromCoroutine(subject_of(client, i)) for i in batch],
                consumeErrors=True,
            )
        except FirstError as e:
            # The connection's own failure, for the caller to report.
            e.subFailure.raiseException()
        progress.update(len(found), len(ids), "messages")
    return found


async def inbox(reactor: Any, options: InboxOptions, password: str) -> int:
    """
    C{fmtp inbox}: FETCH pages up to C{--limit} entries, then the subject
    of each.
    """
    progress = Progress("inbox", not options["json"])
    async with connected(reactor, options, password) as client:
        since, entries = options["since"], []
        while len(entries) < options["limit"]:
            wanted = min(options["limit"] - len(entries), MAX_PAGE)
            page = await client.fetch(since, wanted)
            entries += page.entries
            since = page.next_since
            progress.update(len(entries), unit="entries")
            if len(page.entries) < wanted:
                break
        titles = await subjects(client, [e.id for e in entries], progress)
    progress.done()
    if options["json"]:
        print_json(
            {
                "messages": [
                    {
                        "seq": entry.seq,
                        "id": entry.id,
                        "from": entry.sender,
                        "date": iso_time(id_time(entry.id)),
                        "subject": subject,
                        "digest": entry.digest,
                    }
                    for entry, subject in zip(entries, titles, strict=True)
                ],
                "next_since": since,
            }
        )
        return EXIT_OK
    if not entries:
        print("No messages." if options["since"] == 0 else "No new messages.")
        return EXIT_OK
    rows = [
        [str(e.seq), local_time(id_time(e.id)), printable(e.sender), printable(t)]
        for e, t in zip(entries, titles, strict=True)
    ]
    print(table(["SEQ", "DATE", "FROM", "SUBJECT"], rows), end="")
    if len(entries) == options["limit"]:
        print(f"More may follow: fmtp inbox --since {since}")
    return EXIT_OK


class HeldOptions(JSONOption, ClientOptions):
    synopsis = "[--json]"
    longdesc = (
        "List the senders whose messages wait for your approval (when your "
        "user object says Policy: confirm).  Approve or refuse each with fmtp "
        "approve ADDRESS or fmtp refuse ADDRESS."
    )
    examples = ("fmtp held", "fmtp held --json")
    needs_account = True


class SenderOptions(ClientOptions):
    synopsis = "ADDRESS"
    needs_account = True

    def parseArgs(self, sender: str) -> None:
        self["sender"] = parse_recipient(sender)


class ApproveOptions(SenderOptions):
    longdesc = (
        "Accept a sender from now on: the messages held from them join your "
        "inbox, and later ones go straight there."
    )
    examples = ("fmtp approve lost@lenore.org",)


class RefuseOptions(SenderOptions):
    longdesc = "Drop the messages held from a sender."
    examples = ("fmtp refuse spam@example.com",)


async def senders(
    reactor: Any, name: str, options: ClientOptions, password: str
) -> int:
    """
    C{fmtp held}, C{fmtp approve} and C{fmtp refuse}.
    """
    async with connected(reactor, options, password) as client:
        if name == "held":
            held = await client.held()
        elif name == "approve":
            count = await client.approve(options["sender"])
        else:
            count = await client.refuse(options["sender"])
    if name == "held":
        if options["json"]:
            print_json({"held": held})
        elif held:
            print("\n".join(printable(sender) for sender in held))
        else:
            print("No messages are held.")
    elif name == "approve":
        print(f"Approved {options['sender']}: {count} held moved to your inbox")
    else:
        print(f"Refused {options['sender']}: {count} held dropped")
    return EXIT_OK


def inbox_command(options: InboxOptions) -> int:
    password = login_password(options)
    return run_on_reactor(lambda reactor: inbox(reactor, options, password))


def senders_command(name: str, options: ClientOptions) -> int:
    password = login_password(options)
    return run_on_reactor(lambda reactor: senders(reactor, name, options, password))
