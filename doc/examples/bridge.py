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
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import socket
import sys
import time

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

    def close(self) -> None:
        self.sock.close()

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
        self.seq += 1
        tag = str(self.seq % 1_000_000)
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
        raise BridgeError(f"no answer from {self.server[0]} port {self.server[1]}")


def parse_reply(data: bytes) -> tuple[int, str, str, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    first, *lines = head.split("\r\n")
    code, tag, text = (first.split(" ", 2) + [""])[:3]
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    return int(code), tag, text, headers


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
    finally:
        bridge.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
