"""
The light chat client's own checks (L{fmtp.client.lightchat}): what it
signs, and the pushes it drops.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from fmtp.auth.router import datagram_mac, session_id, sign_frame, unsigned_bytes
from fmtp.client import ChatDatagramClient
from fmtp.wire import UNSOLICITED_TAG, parse_datagram, reply, serialize
from tests.framing.test_datagram import RecordingDatagramTransport

KEY = "k" * 43
SERVER = ("127.0.0.1", 7072)


def client() -> tuple[ChatDatagramClient, RecordingDatagramTransport]:
    made = ChatDatagramClient(Clock(), *SERVER, KEY)
    transport = RecordingDatagramTransport()
    made.makeConnection(transport)
    return made, transport


def test_each_request_is_signed_and_a_lost_one_sent_again_as_is() -> None:
    light, transport = client()
    answered = Deferred.fromCoroutine(
        light.request("SAY", "lounge@poe.net", body=b"hello")
    )
    [(data, addr)] = transport.sent
    assert addr == SERVER
    frame = parse_datagram(data)
    assert frame.headers["Session-Id"] == session_id(KEY)
    assert frame.headers["Seq"] == "1"
    assert frame.headers["Mac"] == datagram_mac(KEY, unsigned_bytes(data))
    assert KEY not in data.decode()
    light._reactor.advance(1.0)  # its answer was lost
    assert transport.sent[1] == (data, SERVER)
    light.datagramReceived(
        serialize(reply(201, frame.tag, headers={"Seq": "9"})), SERVER
    )
    assert answered.result.headers == {"Seq": "9"}


def test_pushes_with_a_wrong_mac_are_dropped() -> None:
    light, _ = client()
    push = reply(256, UNSOLICITED_TAG, "room line", {"Room": "lounge@poe.net"})
    light.datagramReceived(sign_frame(push, "another key"), SERVER)
    light.datagramReceived(sign_frame(push, KEY), ("192.0.2.1", 7072))
    assert (light.forged, light.pushes.pending) == (1, [])
    light.datagramReceived(sign_frame(push, KEY), SERVER)
    [got] = light.pushes.pending
    assert (got.code, got.headers) == (256, {"Room": "lounge@poe.net"})
