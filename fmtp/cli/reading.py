"""
C{fmtp read MESSAGE} and C{fmtp watch}: messages shown, their signatures
checked (L{fmtp.cli.verify}), their attachments saved (L{fmtp.cli.save}).

Everything a message holds is its sender's: on a terminal, control
characters in it are shown escaped (L{printable}), so a message cannot
drive the terminal; piped, its text is written as it is.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from fmtp.attachments import Attachment, split
from fmtp.cli.config import ClientOptions, login_password
from fmtp.cli.options import JSONOption
from fmtp.cli.output import id_time, iso_time, local_time, print_json, printable
from fmtp.cli.presence import SetStatusOptions, status_command
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.save import save_attachments
from fmtp.cli.session import connected, keep_alive, message_id
from fmtp.cli.status import EXIT_OK, Refused
from fmtp.cli.verify import BAD, verify_message
from fmtp.client import ConnectionLost
from fmtp.dns.hostsfile import HostsFileError, load_hosts_file
from fmtp.errors import InvalidObject
from fmtp.objects import FMTPObject, addresses_in
from fmtp.options import DNSOption


class Shown:
    """
    A message taken apart for showing: its text, its attachments, and a
    warning if its attachment table is malformed (the body is then shown
    whole, and nothing can be saved).
    """

    def __init__(self, message: FMTPObject) -> None:
        self.message = message
        self.warning: str | None = None
        try:
            self.text, self.attachments = split(message.properties, message.body)
        except InvalidObject as e:
            self.text, self.attachments = bytes(message.body), []
            self.warning = (
                f"the attachment table is malformed ({e.message}); "
                "the body is shown whole"
            )

    def as_json(self) -> dict[str, Any]:
        props = self.message.properties
        return {
            "id": self.message.id,
            "type": self.message.type,
            "from": props.get("From"),
            "to": addresses_in(props.get("To", "")),
            "subject": props.get("Subject"),
            "date": iso_time(id_time(self.message.id)),
            "parent": props.get("Parent"),
            "properties": dict(props),
            "text": self.text.decode("utf-8", "replace"),
            "attachments": [attachment_json(a) for a in self.attachments],
            "warning": self.warning,
        }

    def headers(self) -> list[tuple[str, str]]:
        props = self.message.properties
        lines = [("From", props.get("From", "?")), ("To", props.get("To", ""))]
        lines.append(("Date", local_time(id_time(self.message.id))))
        if "Subject" in props:
            lines.append(("Subject", props["Subject"]))
        lines.append(("Id", self.message.id))
        if "Parent" in props:
            lines.append(("Parent", props["Parent"]))
        for a in self.attachments:
            lines.append(("Attachment", f"{a.name} ({a.type}, {a.size} bytes)"))
        if self.warning:
            lines.append(("Warning", self.warning))
        return lines

    def print(self, extra: Sequence[tuple[str, str]] = ()) -> None:
        """
        The headers, then a blank line and the text.
        """
        terminal = sys.stdout.isatty()
        for name, value in [*self.headers(), *extra]:
            print(f"{name}: {printable(value)}")
        print()
        if terminal:
            text = printable(self.text.decode("utf-8", "replace"), keep_newlines=True)
            print(text, end="" if text.endswith("\n") else "\n")
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(self.text)
            if self.text and not self.text.endswith(b"\n"):
                sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    return {"name": attachment.name, "type": attachment.type, "size": attachment.size}


class ReadOptions(JSONOption, DNSOption, ClientOptions):
    synopsis = "[--save DIR] [--dns HOST:PORT] [--hosts-file PATH] [--json] MESSAGE"
    longdesc = (
        "Show a message, named by its id or by its number in fmtp inbox (the "
        "SEQ column): its headers, who signed it and what the signature was "
        "checked against (the signing domain's key in the hosts file --hosts-file "
        "names, or in DNS; for your server's own domain, if it publishes none, the "
        "key your server announces), then its text.  Exits 1 if the signature "
        "does not verify.  --save DIR writes its "
        "attachments into DIR (which must exist) under their names made safe, "
        "never replacing a file (photo-1.png instead), never following a link; "
        "not for a message whose signature does not verify."
    )
    examples = (
        "fmtp read 3",
        "fmtp read 1763800000000.9f53fe42a795.lost@lenore.org",
        "fmtp read 3 --save ~/Downloads",
    )
    needs_account = True
    optParameters = [
        ["save", None, None, "Write the attachments into this directory."],
        [
            "hosts-file",
            None,
            None,
            "Check signatures against the keys this hosts file names (as "
            "twistd fmtp --hosts-file does), before DNS.",
        ],
    ]

    def parseArgs(self, object_id: str) -> None:
        self["id"] = object_id

    def postOptions(self) -> None:
        super().postOptions()
        # Before connecting, so a typo costs no login; save_attachments
        # checks again, when it opens the directory.
        if self["save"] is not None and not os.path.isdir(self["save"]):
            raise usage.UsageError(f"--save {self['save']}: no such directory")
        self["hosts-keys"] = {}
        if self["hosts-file"] is not None:
            try:
                self["hosts-keys"] = load_hosts_file(self["hosts-file"]).keys
            except OSError as e:
                raise usage.UsageError(
                    f"--hosts-file {self['hosts-file']}: {e.strerror}"
                )
            except HostsFileError as e:
                raise usage.UsageError(f"--hosts-file {e}")


async def read(reactor: Any, options: ReadOptions, password: str) -> int:
    """
    C{fmtp read}: the message, its signature checked while connected (the
    home server's CAPA may be needed), then shown and its files saved.
    """
    async with connected(reactor, options, password) as client:
        message = await client.get(await message_id(client, options["id"]))
        verdict = await verify_message(
            reactor,
            message,
            options["dns"],
            options["timeout"],
            client.capa,
            options["hosts-keys"],
            options["hosts-file"] or "",
        )
    shown = Shown(message)
    saved = []
    refusal = None
    if verdict.status == BAD:
        refusal = verdict.text
        if options["save"]:
            refusal += "; nothing saved"
    elif options["save"] and shown.warning:
        refusal = "nothing saved: the attachment table is malformed"
    elif options["save"]:
        saved = save_attachments(
            options["save"], shown.attachments, not options["json"]
        )
    if options["json"]:
        print_json(
            {
                **shown.as_json(),
                "signature": verdict.as_json(),
                "saved": [{"name": s.attachment.name, "path": s.path} for s in saved],
            }
        )
    else:
        shown.print([("Signature", verdict.text)])
        for item in saved:
            size = item.attachment.size
            name, path = printable(item.attachment.name), printable(item.path)
            print(f"Saved {name} as {path} ({size} bytes)")
    if refusal is not None:
        raise Refused(refusal)
    return EXIT_OK


def read_command(options: ReadOptions) -> int:
    password = login_password(options)
    return run_on_reactor(lambda reactor: read(reactor, options, password))


class WatchOptions(JSONOption, SetStatusOptions):
    synopsis = "[--presence [--status S] [--note TEXT] [--priority N]] [--json]"
    longdesc = (
        "Stay logged in and show each message as it arrives (one JSON document "
        "a line with --json), until Ctrl-C (exit status 130) or until the "
        "server closes the connection (exit status 3).  Signatures are not "
        "checked here: fmtp read checks them.  With --presence, show your "
        "buddies' presence instead, one line each: first as it is, then each "
        "change, and each subscription request as it comes; meanwhile you "
        "are online (or --status away, busy, invisible) for your subscribers, "
        "and Ctrl-C logs you out."
    )
    examples = (
        "fmtp watch",
        "fmtp watch --json | jq .subject",
        "fmtp watch --presence",
        "fmtp watch --presence --status away --note 'Back at 3' --json",
    )
    optFlags = [["presence", "p", "Show buddies' presence, not messages."]]
    optParameters = [
        ["status", None, None, "With --presence: your status (default online)."]
    ]

    def needs_presence(self) -> bool:
        return self["presence"]

    def postOptions(self) -> None:
        super().postOptions()
        if self["presence"]:
            self.check_presence(self["status"] or "online")
        elif any(self[name] is not None for name in ("status", "note", "priority")):
            raise usage.UsageError("--status, --note and --priority need --presence")


async def watch(reactor: Any, options: WatchOptions, password: str) -> int:
    async with connected(reactor, options, password) as client:
        keepalive = keep_alive(reactor, client)
        if sys.stderr.isatty() and not options["json"]:
            print(f"Watching {client.address}; Ctrl-C to stop.", file=sys.stderr)
        try:
            async for message in client.messages():
                shown = Shown(message)
                if options["json"]:
                    print(json.dumps(shown.as_json(), ensure_ascii=False), flush=True)
                else:
                    shown.print()
                    print(flush=True)
        finally:
            keepalive.stop()
        raise ConnectionLost("the push stream ended")


def watch_command(options: WatchOptions) -> int:
    if options["presence"]:
        return status_command(options)
    password = login_password(options)
    return run_on_reactor(lambda reactor: watch(reactor, options, password))
