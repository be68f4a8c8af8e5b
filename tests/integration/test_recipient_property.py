"""
A property of the object protocol (DESIGN decision 15): for any sequence
of PUT, DELETE and SEND by any users, nothing a recipient received changes
or disappears, except by that recipient's own DELETE.

Run over the whole command stack (frames in, replies out) on a memory
store and a clock, so hypothesis can try hundreds of sequences quickly;
the stores agree with each other by their own conformance suites.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock

from tests.helpers import StreamHarness, add_account, make_services

USERS = ("a@poe.net", "b@poe.net", "c@poe.net")
PASSWORD = "nevermore-quoth"

_user = st.sampled_from(range(len(USERS)))
_body = st.sampled_from([b"", b"original", b"rewritten", b"I agree to pay 0 EUR"])
_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("send"),
            _user,
            st.sets(_user, min_size=1),
            _body,
        ),
        # PUT over a known id (index into the ids seen so far), or a new one.
        st.tuples(
            st.just("put"),
            _user,
            st.integers(0, 8) | st.none(),
            _body,
            st.sampled_from([None, *USERS]),
        ),
        st.tuples(st.just("delete"), _user, st.integers(0, 8)),
    ),
    max_size=25,
)


def ask(session: StreamHarness, verb: str, **kwargs):
    """
    The reply to one request, leaving aside pushes (a user may send to
    themselves): pushes are not what this property is about.
    """
    [answer] = [f for f in session.send(verb, **kwargs) if f.tag != "*"]
    return answer


@dataclass
class Received:
    """
    What each recipient was given: id -> digest and body, as filed.
    """

    held: dict[str, dict[str, tuple[str, bytes]]] = field(
        default_factory=lambda: {user: {} for user in USERS}
    )

    def check(self, sessions: dict[str, StreamHarness]) -> None:
        for user, messages in self.held.items():
            session = sessions[user]
            fetched = ask(session, "FETCH", headers={"Limit": "200"})
            listed = {line.split()[1] for line in fetched.body.decode().splitlines()}
            assert listed == set(messages), (user, listed, messages)
            for message_id, (digest, body) in messages.items():
                got = ask(session, "GET", argument=message_id)
                assert got.code == 200, (user, message_id, got)
                assert (got.headers["Digest"], got.body) == (digest, body)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations=_operations)
def test_nothing_received_changes_but_by_its_recipient(operations) -> None:
    clock = MemoryReactorClock()
    clock.advance(1_800_000_000)
    services = make_services(clock)
    for user in USERS:
        add_account(services.store, user, PASSWORD)
    sessions = {}
    for user in USERS:
        sessions[user] = StreamHarness(services)
        assert sessions[user].login(user, PASSWORD).code == 230
    received = Received()
    ids: list[str] = []

    for op in operations:
        kind, who = op[0], USERS[op[1]]
        session = sessions[who]
        if kind == "send":
            to = " ".join(USERS[i] for i in sorted(op[2]))
            answer = ask(session, "SEND", headers={"To": to}, body=op[3])
            assert answer.code == 201, answer
            ids.append(answer.headers["Id"])
            for line in answer.body.decode().splitlines():
                address, code, _ = line.split(" ", 2)
                if code == "201":
                    received.held[address][answer.headers["Id"]] = (
                        answer.headers["Digest"],
                        op[3],
                    )
        elif kind == "put":
            headers = {"Type": "message", "To": " ".join(USERS)}
            if op[2] is not None and ids:
                headers["Id"] = ids[op[2] % len(ids)]
            if op[4] is not None:
                headers["From"] = op[4]
            answer = ask(session, "PUT", headers=headers, body=op[3])
            if answer.code == 201:
                ids.append(answer.headers["Id"])
        elif ids:
            message_id = ids[op[2] % len(ids)]
            answer = ask(session, "DELETE", argument=message_id)
            if answer.code == 200 and "removed from your inbox" in answer.argument:
                received.held[who].pop(message_id)
        for other in sessions.values():
            other.frames()
        received.check(sessions)
