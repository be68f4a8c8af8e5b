#!/usr/bin/env python3
"""
An example ISP bridge for fmtp: publishes the presence of your users to an
fmtp server over UDP (doc/protocol.md 9.6; doc/admin.md, "ISP bridges").

Only the Python standard library, so that it can be copied anywhere:

    python3 bridge.py --server 192.0.2.10 --name poe-dsl --secret-file S \\
        < updates

reads updates from standard input, one a line (ADDRESS STATUS [NOTE], as
"edgar@poe.net away at the shop"), and sends them in as few datagrams as
fit in 1200 bytes.  Your own system would call L{Bridge.publish} as its
users come and go, and again for those online before their Ttl ends.

With --watch SECONDS it then prints, for that long, the notifications the
server sends about those users (doc/protocol.md 9.8), checking each one's
MAC, and reads the whole state again with a RESYNC over TCP at the start
and whenever a notification's Seq shows that some were lost.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import socket
import sys
import time
from collections.abc import Callable

MAX_DATAGRAM = 1200
#: Room for the command line and headers of a PUBLISH.
HEADER_ROOM = 260


class BridgeError(Exception):
    """
    The server refused a datagram (its code and text), or never answered.
    """


class Bridge:
    """
    One bridge's sender: it numbers, signs and sends PUBLISH datagrams,
    fetching the server's cookie first, and retries a datagram that got
    no answer byte for byte (the server answers a repeat as the first
    time, without applying it twice).

    C{Seq} starts at the time in microseconds, so that it keeps growing
    across restarts of the bridge without being stored.
    """

    def __init__(
        self,
        host: str,
        port: int,
        name: str,
        secret: str,
        ttl: int = 300,
        timeout: float = 2.0,
        tries: int = 3,
    ) -> None:
        self.server = (host, port)
        self.name = name
        self.secret = secret.strip().encode("ascii")
        self.ttl = ttl
        self.tries = tries
        self.cookie: str | None = None
        self.seq = time.time_ns() // 1000
        self.sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        self.sock.settimeout(timeout)
        #: The Seq of the last notification taken into account, and
        #: whether one was missed since the last RESYNC.
        self.notify_seq = 0
        self.resync_needed = True
        #: Called with each valid notification: its code ("252" presence,
        #: "253" request, "254" subscription) and headers.
        self.on_notification: Callable[[str, dict[str, str]], None] = print_notification

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        """
        A number never used before, for a PUBLISH or a RESYNC (they share
        the server's window).
        """
        self.seq += 1
        return self.seq

    def datagram(self, tag: str, lines: list[str]) -> bytes:
        body = "".join(f"{line}\r\n" for line in lines).encode("utf-8")
        headers = [f"Bridge: {self.name}", f"Seq: {self.seq}", f"Ttl: {self.ttl}"]
        if self.cookie:
            headers.append(f"Cookie: {self.cookie}")
        headers.append(f"Length: {len(body)}")
        command = f"PUBLISH {tag}\r\n".encode()
        rest = "".join(f"{h}\r\n" for h in headers).encode() + b"\r\n" + body
        mac = hmac.new(self.secret, command + rest, hashlib.sha256).hexdigest()
        return command + f"Mac: {mac}\r\n".encode() + rest

    def publish(self, lines: list[str]) -> dict[str, str]:
        """
        Publish updates (C{ADDRESS STATUS [NOTE]}) in one datagram.

        @return: the reply's headers: C{Applied}, and C{Refused} if some
            lines were (C{LINE=CODE ...}).
        @raise BridgeError: if the whole datagram was refused.
        """
        tag = str(self.next_seq() % 1_000_000)
        for _ in range(2):
            code, text, headers = self._exchange(self.datagram(tag, lines), tag)
            if code != 432:
                break
            self.cookie = headers["Cookie"]
        if code != 200:
            raise BridgeError(f"{code} {text}")
        return headers

    def _exchange(self, data: bytes, tag: str) -> tuple[int, str, dict[str, str]]:
        if len(data) > MAX_DATAGRAM:
            raise BridgeError(f"datagram of {len(data)} bytes: send fewer lines")
        for _ in range(self.tries):
            self.sock.sendto(data, self.server)
            deadline = time.monotonic() + (self.sock.gettimeout() or 2.0)
            while time.monotonic() < deadline:
                try:
                    answer, _ = self.sock.recvfrom(2048)
                except TimeoutError:
                    break
                code, reply_tag, text, headers = parse_reply(answer)
                if reply_tag == tag:
                    return code, text, headers
                if reply_tag == "*":
                    self.take_notification(answer)
        raise BridgeError(f"no answer from {self.server[0]} port {self.server[1]}")

    def take_notification(self, data: bytes) -> bool:
        """
        A datagram the server sent unasked: checked (its MAC, as the
        server checks a PUBLISH's, and that it is for this bridge), its
        Seq followed, and handed to L{on_notification}.

        @return: whether it was a valid notification.
        """
        try:
            code, tag, _, headers = parse_reply(data)
            seq = int(headers.get("Seq", ""))
        except ValueError:
            return False
        mac = hmac.new(self.secret, unsigned(data), hashlib.sha256).hexdigest()
        if tag != "*" or headers.get("Bridge") != self.name:
            return False
        if not hmac.compare_digest(headers.get("Mac", "").lower(), mac):
            return False
        if 1 < seq <= self.notify_seq:
            # In the last RESYNC's answer already, or a late repeat: what
            # it says was superseded.
            return True
        if seq != self.notify_seq + 1:
            # Some were lost, or (a 1 again) the server restarted.
            self.resync_needed = True
        self.notify_seq = seq
        self.on_notification(str(code), headers)
        return True

    def receive(self, seconds: float) -> int:
        """
        Take the notifications that arrive within C{seconds}.

        @return: how many were valid.
        """
        taken = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                break
            taken += self.take_notification(data)
        return taken

    def resync(self, port: int = 7071) -> list[str]:
        """
        Read the state of every user this bridge publishes for, over TCP
        (RESYNC, every page), and count notifications from where it
        stands.  Use TLS (STARTTLS) on a network that is not yours.

        @return: the lines C{USER CONTACT STATE STATUS [NOTE]}.
        @raise BridgeError: if the server refused it.
        """
        lines: list[str] = []
        after: str | None = None
        first = True
        with socket.create_connection((self.server[0], port), timeout=10) as conn:
            stream = conn.makefile("rb")
            read_frame(stream)  # the greeting
            while True:
                headers = [f"Bridge: {self.name}", f"Seq: {self.next_seq()}"]
                if after is not None:
                    headers.append(f"After: {after}")
                request = "".join(f"{line}\r\n" for line in ["RESYNC 1", *headers])
                request_bytes = (request + "\r\n").encode()
                mac = hmac.new(self.secret, request_bytes, hashlib.sha256).hexdigest()
                command_end = request_bytes.index(b"\r\n") + 2
                conn.sendall(
                    request_bytes[:command_end]
                    + f"Mac: {mac}\r\n".encode()
                    + request_bytes[command_end:]
                )
                code, text, answer, body = read_frame(stream)
                if code != 200:
                    raise BridgeError(f"RESYNC: {code} {text}")
                if first:
                    self.notify_seq = int(answer["Notify-Seq"])
                    first = False
                lines += body.decode("utf-8").splitlines()
                after = answer.get("Next")
                if after is None:
                    break
        self.resync_needed = False
        return lines


def parse_reply(data: bytes) -> tuple[int, str, str, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    first, *lines = head.split("\r\n")
    code, tag, text = (first.split(" ", 2) + [""])[:3]
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    return int(code), tag, text, headers


def unsigned(data: bytes) -> bytes:
    """
    A datagram without its Mac header line: what its MAC covers.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept = [lines[0]] + [
        line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() != b"mac"
    ]
    return b"\r\n".join(kept) + sep + body


def read_frame(stream) -> tuple[int, str, dict[str, str], bytes]:
    """
    One reply read from a TCP stream: code, text, headers and body.
    """
    first = stream.readline().decode("utf-8").rstrip("\r\n")
    headers: dict[str, str] = {}
    while line := stream.readline().decode("utf-8").rstrip("\r\n"):
        name, _, value = line.partition(": ")
        headers[name] = value
    if not first:
        raise BridgeError("the server closed the connection")
    body = stream.read(int(headers.get("Length", "0")))
    code, _, text = (first.split(" ", 2) + [""])[:3]
    return int(code), text, headers, body


def print_notification(code: str, headers: dict[str, str]) -> None:
    what = {
        "252": f"{headers.get('From')} is {headers.get('Status')}"
        + (f" ({headers['Note']})" if "Note" in headers else ""),
        "253": f"{headers.get('From')} asks to see them",
        "254": f"{headers.get('From')}: now {headers.get('Subscription')}",
    }.get(code, f"{code} from {headers.get('From')}")
    print(f"for {headers.get('To')}: {what}")


def batches(lines: list[str]) -> list[list[str]]:
    """
    The lines in groups that each fit in one datagram.
    """
    groups: list[list[str]] = [[]]
    size = 0
    for line in lines:
        length = len(line.encode("utf-8")) + 2
        if groups[-1] and size + length > MAX_DATAGRAM - HEADER_ROOM:
            groups.append([])
            size = 0
        groups[-1].append(line)
        size += length
    return [group for group in groups if group]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="the fmtp server's host")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--name", required=True, help="the bridge's name")
    parser.add_argument(
        "--secret-file", required=True, help="a file holding the bridge's secret"
    )
    parser.add_argument("--ttl", type=int, default=300)
    parser.add_argument(
        "--tcp-port",
        type=int,
        help="the presence listener's TCP port, for RESYNC (default: --port)",
    )
    parser.add_argument(
        "--watch",
        type=float,
        default=0,
        metavar="SECONDS",
        help="then print the notifications received for that long",
    )
    args = parser.parse_args(argv)
    with open(args.secret_file) as f:
        secret = f.read()
    lines = [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    bridge = Bridge(args.server, args.port, args.name, secret, args.ttl)
    status = 0
    try:
        for group in batches(lines):
            try:
                headers = bridge.publish(group)
            except BridgeError as e:
                print(f"bridge: refused: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"applied {headers.get('Applied')}", end="")
            refused = headers.get("Refused")
            print(f", refused lines {refused}" if refused else "")
        deadline = time.monotonic() + args.watch
        while (left := deadline - time.monotonic()) > 0:
            if bridge.resync_needed:
                for line in bridge.resync(args.tcp_port or args.port):
                    print(f"state: {line}")
            bridge.receive(min(left, 1.0))
    finally:
        bridge.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
