"""
Tests for the L{fmtp.dns} package: resolver, cache, key verifier, routes
and hosts file.

Unit tests drive the caches with a fake resolver and a L{Clock}; the
integration tests at the end ask a real Twisted Names server on
127.0.0.1 (L{tests.dnsserver}) through dnspython in the reactor's thread
pool.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

import dns.rdata
import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.dns.cache import LookupCache
from fmtp.dns.hostsfile import (
    DEFAULT_HOSTS,
    HostsFile,
    HostsFileError,
    load_hosts_file,
    parse_hosts,
)
from fmtp.dns.keyverifier import DNSKeyVerifier
from fmtp.dns.resolver import (
    DNSAnswer,
    DNSFailure,
    DNSResolver,
    NoSuchRecords,
    parse_nameserver,
    txt_record_text,
)
from fmtp.dns.routes import (
    NoRoute,
    Route,
    RouteLookupFailed,
    RouteResolver,
    order_mx,
    order_srv,
)
from fmtp.errors import BadSignature, FMTPError, KeyLookupFailed, NoKeyPublished
from fmtp.interfaces import IKeyVerifier
from fmtp.keys.records import DomainPublicKey, format_key_record
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject
from tests.dnsserver import (
    fmtp_zone,
    key_txt,
    silent_dns_server,
    start_dns_server,
    zone_text,
)

NOW = 1_700_000_000


def rdata(rdtype: str, text: str):
    return dns.rdata.from_text("IN", rdtype, text)


def answer(rdtype: str, *texts: str, ttl: float = 300) -> DNSAnswer:
    return DNSAnswer(tuple(rdata(rdtype, t) for t in texts), ttl)


def txt(*records: str, ttl: float = 300) -> DNSAnswer:
    return answer("TXT", *(f'"{r}"' for r in records), ttl=ttl)


def message_from(address: str) -> FMTPObject:
    return FMTPObject(
        f"1700000000000.abcdef.{address}",
        "message",
        {"From": address, "To": "lost@lenore.org", "Subject": "nevermore"},
        b"Quoth the raven",
    )


class FakeResolver:
    """
    Answers from a table; or, with C{hold}, keeps each query pending until
    the test fires it.
    """

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], DNSAnswer | Exception] = {}
        self.queries: list[tuple[str, str]] = []
        self.hold = False
        self.held: list[tuple[tuple[str, str], Deferred]] = []

    def set(self, name: str, rdtype: str, result: DNSAnswer | Exception) -> None:
        self.table[name, rdtype] = result

    def query(self, name: str, rdtype: str) -> Deferred[DNSAnswer]:
        self.queries.append((name, rdtype))
        if self.hold:
            d: Deferred[DNSAnswer] = Deferred()
            self.held.append(((name, rdtype), d))
            return d
        return self._result(name, rdtype)

    def _result(self, name: str, rdtype: str) -> Deferred[DNSAnswer]:
        result = self.table.get((name, rdtype))
        if result is None:
            return fail(NoSuchRecords(f"no {rdtype} at {name}", 300, nxdomain=False))
        if isinstance(result, Exception):
            # A fresh copy: a Failure remembers its traceback.
            if isinstance(result, NoSuchRecords):
                result = NoSuchRecords(
                    result.message, result.negative_ttl, result.nxdomain
                )
            else:
                result = type(result)(str(result))
            return fail(result)
        return succeed(result)

    def release(self) -> None:
        """
        Answer every held query from the table.
        """
        held, self.held = self.held, []
        for (name, rdtype), d in held:
            self._result(name, rdtype).chainDeferred(d)


# ---------------------------------------------------------------------------
# Parsing helpers


class NameserverTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        self.assertEqual(parse_nameserver("127.0.0.1:5353"), ("127.0.0.1", 5353))
        self.assertEqual(parse_nameserver("192.0.2.1"), ("192.0.2.1", 53))

    def test_ipv6(self) -> None:
        self.assertEqual(parse_nameserver("[::1]:5353"), ("::1", 5353))
        self.assertEqual(parse_nameserver("[2001:DB8::1]"), ("2001:db8::1", 53))
        self.assertEqual(parse_nameserver("2001:db8::1"), ("2001:db8::1", 53))

    def test_errors(self) -> None:
        for text, words in [
            ("ns.example.com:53", "not an IP address"),
            ("127.0.0.1:0", "out of range"),
            ("127.0.0.1:65536", "out of range"),
            ("127.0.0.1:dns", "not a number"),
            ("127.0.0.1:", "not a number"),
            ("[::1", "missing ]"),
            ("[127.0.0.1]:53", "only an IPv6"),
            ("[::1]53", "expected :PORT"),
            ("::1:53:zz", "[ADDRESS]:PORT"),
            ("", "missing host"),
            (":53", "missing host"),
        ]:
            with self.assertRaises(ValueError) as raised:
                parse_nameserver(text)
            self.assertIn(words, str(raised.exception), text)

    def test_resolver_needs_a_server(self) -> None:
        with self.assertRaises(ValueError):
            DNSResolver(Clock(), [])


# ---------------------------------------------------------------------------
# The cache


class LookupCacheTests(SynchronousTestCase):
    """
    L{LookupCache} on its own, with a lookup the test answers by hand.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.lookups: list[tuple[str, Deferred]] = []
        self.cache: LookupCache[str, str] = LookupCache(
            self.clock, self.lookup, max_entries=3
        )
        self.logged: list[dict] = []
        self.cache._log = Logger(observer=self.logged.append)

    def lookup(self, key: str) -> Deferred:
        d: Deferred = Deferred()
        self.lookups.append((key, d))
        return d

    def answer(self, value: str, ttl: float) -> None:
        key, d = self.lookups.pop(0)
        d.callback((value, ttl))

    def test_shared_lookup(self) -> None:
        """
        Callers asking while a lookup is in flight wait for that one.
        """
        waiting = [self.cache.get("a") for _ in range(5)]
        self.assertEqual(len(self.lookups), 1)
        self.assertEqual(self.cache.in_flight(), 1)
        self.answer("A", 300)
        self.assertEqual([self.successResultOf(d) for d in waiting], ["A"] * 5)
        self.assertEqual(self.cache.in_flight(), 0)

    def test_lookup_that_raises(self) -> None:
        """
        A lookup function that raises is a temporary failure, not a crash.
        """

        def broken(key: str) -> Deferred:
            raise RuntimeError("bug")

        cache: LookupCache[str, str] = LookupCache(self.clock, broken)
        cache._log = Logger(observer=self.logged.append)
        self.failureResultOf(cache.get("a"), RuntimeError)
        self.assertEqual(cache.in_flight(), 0)

    def test_lru_bound(self) -> None:
        for key in "abc":
            d = self.cache.get(key)
            self.answer(key.upper(), 300)
            self.successResultOf(d)
        self.successResultOf(self.cache.get("a"))  # a is now the most recent
        d = self.cache.get("d")
        self.answer("D", 300)
        self.successResultOf(d)
        self.assertEqual(len(self.cache), 3)
        self.assertNotIn("b", self.cache)
        self.assertIn("a", self.cache)
        self.assertEqual(self.lookups, [])

    def test_forget(self) -> None:
        d = self.cache.get("a")
        self.answer("A", 300)
        self.successResultOf(d)
        self.cache.forget("a")
        self.cache.get("a")
        self.assertEqual(len(self.lookups), 1)

    def test_minimum_size(self) -> None:
        with self.assertRaises(ValueError):
            LookupCache(self.clock, self.lookup, max_entries=0)


class KeyCacheTests(SynchronousTestCase):
    """
    L{DNSKeyVerifier}'s cache: TTLs, refresh, sharing, stale answers,
    negative answers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.resolver = FakeResolver()
        self.signer = DomainSigner(generate_private_key(), "poe.net")
        self.record = format_key_record(self.signer.public_key())
        self.resolver.set("fmtpkey.poe.net", "TXT", txt(self.record, ttl=300))
        self.verifier = DNSKeyVerifier(self.resolver, self.clock, max_entries=3)
        self.logged: list[dict] = []
        self.verifier._log = Logger(observer=self.logged.append)
        self.verifier._cache._log = Logger(observer=self.logged.append)

    def keys(self, domain: str = "poe.net") -> list[DomainPublicKey]:
        return self.successResultOf(self.verifier.keys_for_domain(domain))

    def refused(self, error: type[Exception], domain: str = "poe.net") -> FMTPError:
        return self.failureResultOf(self.verifier.keys_for_domain(domain), error).value

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IKeyVerifier, self.verifier))

    def test_found_and_cached(self) -> None:
        self.assertEqual(self.keys("POE.net"), [self.signer.public_key()])
        self.clock.advance(200)
        self.assertEqual(self.keys(), [self.signer.public_key()])
        self.assertEqual(self.resolver.queries, [("fmtpkey.poe.net", "TXT")])

    def test_expiry(self) -> None:
        self.keys()
        self.clock.advance(300)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)

    def test_ttl_floor(self) -> None:
        """
        A TTL under a minute is taken as a minute.
        """
        self.resolver.set("fmtpkey.poe.net", "TXT", txt(self.record, ttl=1))
        self.keys()
        self.clock.advance(50)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 1)
        self.clock.advance(10)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)

    def test_ttl_ceiling(self) -> None:
        """
        A TTL over a day is taken as a day, so a revocation reaches us.
        """
        self.resolver.set("fmtpkey.poe.net", "TXT", txt(self.record, ttl=7 * 86400))
        self.keys()
        self.clock.advance(86400)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)

    def test_background_refresh(self) -> None:
        """
        Used in the last tenth of its life, an entry is served at once and
        refreshed in the background: a hot domain never waits.
        """
        self.keys()
        self.clock.advance(269)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 1)
        self.resolver.hold = True
        self.clock.advance(2)  # 271 s: in the last 10 % of 300
        self.assertEqual(self.keys(), [self.signer.public_key()])
        self.assertEqual(len(self.resolver.queries), 2)
        # Other uses meanwhile share the refresh in flight.
        self.keys()
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)
        new = DomainSigner(generate_private_key(), "poe.net")
        self.resolver.set(
            "fmtpkey.poe.net", "TXT", txt(format_key_record(new.public_key()))
        )
        self.resolver.release()
        self.resolver.hold = False
        self.clock.advance(100)  # past the old entry's expiry
        self.assertEqual(self.keys(), [new.public_key()])
        self.assertEqual(len(self.resolver.queries), 2)

    def test_shared_lookup(self) -> None:
        self.resolver.hold = True
        waiting = [self.verifier.keys_for_domain("poe.net") for _ in range(10)]
        for d in waiting:
            self.assertNoResult(d)
        self.assertEqual(len(self.resolver.queries), 1)
        self.resolver.release()
        for d in waiting:
            self.assertEqual(self.successResultOf(d), [self.signer.public_key()])

    def test_failure_with_nothing_cached(self) -> None:
        self.resolver.set("fmtpkey.poe.net", "TXT", DNSFailure("timed out"))
        error = self.refused(KeyLookupFailed)
        self.assertIn("timed out", error.message)
        self.assertEqual(error.code, 451)
        # Not cached: the next use asks again.
        self.refused(KeyLookupFailed)
        self.assertEqual(len(self.resolver.queries), 2)

    def test_stale_on_failure(self) -> None:
        """
        While DNS fails, an expired entry is served for up to a day past
        its expiry (RFC 8767), without asking DNS at every use.
        """
        self.keys()
        self.resolver.set("fmtpkey.poe.net", "TXT", DNSFailure("SERVFAIL"))
        self.clock.advance(400)
        self.assertEqual(self.keys(), [self.signer.public_key()])
        self.assertEqual(len(self.resolver.queries), 2)
        self.assertTrue(any("stale" in e["log_format"] for e in self.logged))
        self.clock.advance(10)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)
        self.clock.advance(30)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 3)
        self.clock.advance(86400 - 140)
        self.keys()  # 300 + 86400 - 10: still within the day
        self.clock.advance(20)
        self.refused(KeyLookupFailed)

    def test_failed_refresh_keeps_entry(self) -> None:
        self.keys()
        self.resolver.set("fmtpkey.poe.net", "TXT", DNSFailure("SERVFAIL"))
        self.clock.advance(280)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)
        # Not retried at every use while it keeps failing.
        self.clock.advance(5)
        self.keys()
        self.assertEqual(len(self.resolver.queries), 2)
        self.resolver.set("fmtpkey.poe.net", "TXT", txt(self.record, ttl=300))
        self.clock.advance(15)  # expired now: a plain lookup
        self.keys()
        self.assertEqual(len(self.resolver.queries), 3)

    def test_no_record(self) -> None:
        """
        No TXT record is a permanent "no key", cached for the negative TTL.
        """
        self.resolver.set(
            "fmtpkey.poe.net", "TXT", NoSuchRecords("gone", 120, nxdomain=True)
        )
        error = self.refused(NoKeyPublished)
        self.assertEqual(error.code, 554)
        self.clock.advance(100)
        self.refused(NoKeyPublished)
        self.assertEqual(len(self.resolver.queries), 1)
        self.clock.advance(20)
        self.refused(NoKeyPublished)
        self.assertEqual(len(self.resolver.queries), 2)

    def test_negative_ttl_ceiling(self) -> None:
        """
        A "no key" is kept 3 hours at most, so a newly published key is
        believed the same afternoon.
        """
        self.resolver.set("fmtpkey.poe.net", "TXT", NoSuchRecords("gone", 86400))
        self.refused(NoKeyPublished)
        self.resolver.set("fmtpkey.poe.net", "TXT", txt(self.record))
        self.clock.advance(3 * 3600)
        self.keys()

    def test_negative_not_served_stale(self) -> None:
        """
        A stale "no key" would bounce a message for good: a failure then
        is temporary.
        """
        self.resolver.set("fmtpkey.poe.net", "TXT", NoSuchRecords("gone", 120))
        self.refused(NoKeyPublished)
        self.resolver.set("fmtpkey.poe.net", "TXT", DNSFailure("timed out"))
        self.clock.advance(200)
        self.refused(KeyLookupFailed)

    def test_withdrawn_on_refresh(self) -> None:
        """
        A refresh that finds the records gone replaces the keys.
        """
        self.keys()
        self.resolver.set("fmtpkey.poe.net", "TXT", NoSuchRecords("gone", 120))
        self.clock.advance(280)
        self.keys()
        self.refused(NoKeyPublished)

    def test_other_txt_records_ignored(self) -> None:
        """
        TXT records that are not key records are skipped silently; key
        records that do not parse are skipped and logged; the strings of
        one record are joined.
        """
        half = len(self.record) // 2
        both = answer(
            "TXT",
            '"some-verification=abc"',
            '"v=FMTP1; k=ed25519; p=garbage"',
            f'"{self.record[:half]}" "{self.record[half:]}"',
        )
        self.assertEqual(txt_record_text(both.rdata[2]), self.record)
        self.resolver.set("fmtpkey.poe.net", "TXT", both)
        self.assertEqual(self.keys(), [self.signer.public_key()])
        warnings = [e for e in self.logged if "Skipping" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertIn("garbage", warnings[0]["record"])

    def test_no_usable_record(self) -> None:
        self.resolver.set(
            "fmtpkey.poe.net", "TXT", txt("v=spf1 -all", "v=FMTP1; p=", ttl=90)
        )
        error = self.refused(NoKeyPublished)
        self.assertIn("no usable key", error.message)
        self.clock.advance(80)
        self.refused(NoKeyPublished)
        self.assertEqual(len(self.resolver.queries), 1)

    def test_bad_domain(self) -> None:
        self.refused(NoKeyPublished, "bad domain!")
        self.assertEqual(self.resolver.queries, [])

    def test_lru_bound(self) -> None:
        for domain in ["a.example", "b.example", "c.example", "d.example"]:
            self.resolver.set(f"fmtpkey.{domain}", "TXT", txt(self.record))
            self.verifier.keys_for_domain(domain)
        self.assertEqual(len(self.verifier._cache), 3)
        self.assertNotIn("a.example", self.verifier._cache)

    def test_static_wins(self) -> None:
        """
        Static records (a hosts file) win over DNS for their domains.
        """
        other = DomainSigner(generate_private_key(), "poe.net")
        verifier = DNSKeyVerifier(
            self.resolver,
            self.clock,
            static={"Poe.NET": [format_key_record(other.public_key())]},
        )
        keys = self.successResultOf(verifier.keys_for_domain("poe.net"))
        self.assertEqual(keys, [other.public_key()])
        self.assertEqual(self.resolver.queries, [])

    def test_add_signer(self) -> None:
        own = DomainSigner(generate_private_key(), "lenore.org")
        self.verifier.add_signer(own)
        signed = own.sign_object(message_from("lost@lenore.org"), NOW)
        key = self.successResultOf(self.verifier.verify_object(signed))
        self.assertEqual(key, own.public_key())
        self.assertEqual(self.resolver.queries, [])

    def test_verify_object(self) -> None:
        signed = self.signer.sign_object(message_from("edgar@poe.net"), NOW)
        key = self.successResultOf(self.verifier.verify_object(signed))
        self.assertEqual(key, self.signer.public_key())
        forged = DomainSigner(generate_private_key(), "poe.net").sign_object(
            message_from("edgar@poe.net"), NOW
        )
        failure = self.failureResultOf(self.verifier.verify_object(forged))
        self.assertIsInstance(failure.value, BadSignature)
        unsigned = message_from("edgar@poe.net")
        self.failureResultOf(self.verifier.verify_object(unsigned), BadSignature)
        self.assertEqual(len(self.resolver.queries), 1)

    def test_verify_object_lookup_failed(self) -> None:
        self.resolver.set("fmtpkey.poe.net", "TXT", DNSFailure("timed out"))
        signed = self.signer.sign_object(message_from("edgar@poe.net"), NOW)
        self.failureResultOf(self.verifier.verify_object(signed), KeyLookupFailed)


# ---------------------------------------------------------------------------
# Routes


class OrderTests(SynchronousTestCase):
    def test_srv_priority_first(self) -> None:
        records = [
            rdata("SRV", "20 0 1 c.example."),
            rdata("SRV", "10 5 1 a.example."),
            rdata("SRV", "10 5 1 b.example."),
        ]
        for seed in range(20):
            ordered = order_srv(records, random.Random(seed))
            self.assertEqual(str(ordered[2].target), "c.example.")

    def test_srv_weights(self) -> None:
        """
        Within a priority, a record of weight 90 comes first about nine
        times in ten against one of weight 10, and a weight-0 one rarely.
        """
        records = [
            rdata("SRV", "10 10 1 light.example."),
            rdata("SRV", "10 90 1 heavy.example."),
            rdata("SRV", "10 0 1 zero.example."),
        ]
        rng = random.Random(7)
        firsts = Counter(str(order_srv(records, rng)[0].target) for _ in range(2000))
        self.assertGreater(firsts["heavy.example."], 1650)
        self.assertLess(firsts["heavy.example."], 1950)
        self.assertLess(firsts["zero.example."], 40)

    def test_mx_preference(self) -> None:
        records = [
            rdata("MX", "20 c.example."),
            rdata("MX", "10 a.example."),
            rdata("MX", "10 b.example."),
        ]
        seen = set()
        for seed in range(20):
            ordered = order_mx(
                [_Pref(r.preference, str(r.exchange)) for r in records],
                random.Random(seed),
            )
            self.assertEqual(ordered[2].name, "c.example.")
            seen.add(ordered[0].name)
        self.assertEqual(seen, {"a.example.", "b.example."})


class _Pref:
    def __init__(self, priority: int, name: str) -> None:
        self.priority = priority
        self.name = name


class RouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resolver = FakeResolver()
        self.routes = RouteResolver(self.resolver, self.clock, rng=random.Random(1))
        self.routes._log = Logger(observer=lambda e: None)

    def route_list(self, domain: str = "lenore.org") -> list[Route]:
        return self.successResultOf(self.routes.routes_for(domain))

    def refused(self, error: type[Exception], domain: str = "lenore.org"):
        return self.failureResultOf(self.routes.routes_for(domain), error).value

    def test_srv(self) -> None:
        self.resolver.set(
            "_fmtp._tcp.lenore.org",
            "SRV",
            answer("SRV", "10 0 8000 lost.lenore.org.", "20 0 7070 backup.lenore.org."),
        )
        self.resolver.set("lost.lenore.org", "A", answer("A", "127.0.0.3"))
        self.resolver.set("lost.lenore.org", "AAAA", answer("AAAA", "::1"))
        self.resolver.set("backup.lenore.org", "A", answer("A", "127.0.0.4"))
        self.assertEqual(
            self.route_list(),
            [
                Route("lost.lenore.org", 8000, "127.0.0.3"),
                Route("lost.lenore.org", 8000, "::1"),
                Route("backup.lenore.org", 7070, "127.0.0.4"),
            ],
        )

    def test_srv_target_without_address(self) -> None:
        """
        A target with no address is skipped; if none has one, no route.
        """
        self.resolver.set(
            "_fmtp._tcp.lenore.org",
            "SRV",
            answer("SRV", "10 0 8000 gone.lenore.org.", "20 0 7070 ok.lenore.org."),
        )
        self.resolver.set("ok.lenore.org", "A", answer("A", "127.0.0.3"))
        self.assertEqual(self.route_list(), [Route("ok.lenore.org", 7070, "127.0.0.3")])
        self.resolver.set(
            "_fmtp._tcp.lenore.org", "SRV", answer("SRV", "10 0 8000 gone.lenore.org.")
        )
        self.clock.advance(300)
        error = self.refused(NoRoute)
        self.assertIn("no SRV target has an address", error.message)

    def test_srv_target_lookup_failed(self) -> None:
        self.resolver.set(
            "_fmtp._tcp.lenore.org",
            "SRV",
            answer("SRV", "10 0 8000 a.lenore.org.", "20 0 7070 b.lenore.org."),
        )
        self.resolver.set("a.lenore.org", "A", DNSFailure("timed out"))
        self.resolver.set("a.lenore.org", "AAAA", DNSFailure("timed out"))
        self.resolver.set("b.lenore.org", "A", answer("A", "127.0.0.4"))
        self.assertEqual(self.route_list(), [Route("b.lenore.org", 7070, "127.0.0.4")])
        # Cached for the shortest time only, to try the first again soon.
        self.clock.advance(60)
        self.route_list()
        self.assertEqual(self.resolver.queries.count(("a.lenore.org", "A")), 2)
        # With nothing resolving, the last routes found are served stale.
        self.resolver.set("b.lenore.org", "A", DNSFailure("timed out"))
        self.clock.advance(60)
        self.assertEqual(self.route_list(), [Route("b.lenore.org", 7070, "127.0.0.4")])
        self.routes._routes.forget("lenore.org")
        self.refused(RouteLookupFailed)

    def test_srv_ip_target(self) -> None:
        self.resolver.set(
            "_fmtp._tcp.lenore.org", "SRV", answer("SRV", "10 0 8000 127.0.0.3.")
        )
        # Not a proper SRV target, but an address needs no lookup anyway.
        self.assertEqual(self.route_list()[0].address, "127.0.0.3")

    def test_srv_dot(self) -> None:
        """
        A lone SRV record with target "." says the domain offers no fmtp.
        """
        self.resolver.set("_fmtp._tcp.lenore.org", "SRV", answer("SRV", "0 0 0 ."))
        self.resolver.set("lenore.org", "MX", answer("MX", "10 mail.lenore.org."))
        error = self.refused(NoRoute)
        self.assertEqual(error.code, 554)
        self.assertIn("offers no fmtp", error.message)
        self.assertNotIn(("lenore.org", "MX"), self.resolver.queries)

    def test_srv_failure_does_not_fall_back(self) -> None:
        """
        When SRV cannot be looked up, MX is not tried: the domain may have
        SRV records that say otherwise.
        """
        self.resolver.set("_fmtp._tcp.lenore.org", "SRV", DNSFailure("SERVFAIL"))
        self.resolver.set("lenore.org", "MX", answer("MX", "10 mail.lenore.org."))
        error = self.refused(RouteLookupFailed)
        self.assertEqual(error.code, 451)
        self.assertNotIn(("lenore.org", "MX"), self.resolver.queries)

    def test_mx(self) -> None:
        self.resolver.set(
            "lenore.org", "MX", answer("MX", "20 b.lenore.org.", "10 a.lenore.org.")
        )
        self.resolver.set("a.lenore.org", "A", answer("A", "127.0.0.3"))
        self.resolver.set("b.lenore.org", "AAAA", answer("AAAA", "::1"))
        self.assertEqual(
            self.route_list(),
            [
                Route("a.lenore.org", 7070, "127.0.0.3"),
                Route("b.lenore.org", 7070, "::1"),
            ],
        )

    def test_null_mx(self) -> None:
        self.resolver.set("lenore.org", "MX", answer("MX", "0 ."))
        self.resolver.set("lenore.org", "A", answer("A", "127.0.0.3"))
        error = self.refused(NoRoute)
        self.assertIn("null MX", error.message)

    def test_mx_failure(self) -> None:
        self.resolver.set("lenore.org", "MX", DNSFailure("timed out"))
        self.refused(RouteLookupFailed)

    def test_address(self) -> None:
        self.resolver.set("lenore.org", "A", answer("A", "127.0.0.3", ttl=100))
        routes = RouteResolver(self.resolver, self.clock, default_port=8000)
        self.assertEqual(
            self.successResultOf(routes.routes_for("lenore.org")),
            [Route("lenore.org", 8000, "127.0.0.3")],
        )

    def test_nothing(self) -> None:
        """
        No SRV, no MX, no address: no route, cached as a negative answer.
        """
        error = self.refused(NoRoute)
        self.assertIn("no SRV, MX, A or AAAA", error.message)
        count = len(self.resolver.queries)
        self.refused(NoRoute)
        self.assertEqual(len(self.resolver.queries), count)

    def test_nxdomain(self) -> None:
        self.resolver.set(
            "lenore.org", "MX", NoSuchRecords("no such", 60, nxdomain=True)
        )
        self.assertIn("does not exist", self.refused(NoRoute).message)
        self.assertNotIn(("lenore.org", "A"), self.resolver.queries)

    def test_bad_domain(self) -> None:
        self.refused(NoRoute, "not a domain!")

    def test_ttl_is_the_shortest(self) -> None:
        """
        Routes are cached for the shortest TTL of the records they came
        from.
        """
        self.resolver.set(
            "_fmtp._tcp.lenore.org",
            "SRV",
            answer("SRV", "10 0 8000 lost.lenore.org.", ttl=3600),
        )
        self.resolver.set("lost.lenore.org", "A", answer("A", "127.0.0.3", ttl=120))
        self.route_list()
        self.clock.advance(100)
        self.route_list()
        count = len(self.resolver.queries)
        self.clock.advance(20)
        self.route_list()
        self.assertGreater(len(self.resolver.queries), count)

    def test_stale_routes(self) -> None:
        self.resolver.set("lenore.org", "A", answer("A", "127.0.0.3", ttl=100))
        self.route_list()
        self.resolver.set("_fmtp._tcp.lenore.org", "SRV", DNSFailure("timed out"))
        self.clock.advance(1000)
        self.assertEqual(self.route_list(), [Route("lenore.org", 7070, "127.0.0.3")])

    def test_static_routes_win(self) -> None:
        self.resolver.set("lenore.org", "A", answer("A", "127.0.0.9"))
        self.resolver.set("relay.example", "A", answer("A", "127.0.0.5"))
        routes = RouteResolver(
            self.resolver,
            self.clock,
            static_routes={
                "Lenore.org": [("lost.lenore.org", 8000), ("relay.example", 7070)]
            },
            static_addresses={"lost.lenore.org": ["127.0.0.3", "::1"]},
        )
        self.assertEqual(
            self.successResultOf(routes.routes_for("lenore.org")),
            [
                Route("lost.lenore.org", 8000, "127.0.0.3"),
                Route("lost.lenore.org", 8000, "::1"),
                Route("relay.example", 7070, "127.0.0.5"),
            ],
        )
        self.assertEqual(self.resolver.queries[0], ("relay.example", "A"))
        self.assertNotIn(("_fmtp._tcp.lenore.org", "SRV"), self.resolver.queries)

    def test_static_route_without_address(self) -> None:
        routes = RouteResolver(
            self.resolver,
            self.clock,
            static_routes={"lenore.org": [("gone.example", 1)]},
        )
        self.failureResultOf(routes.routes_for("lenore.org"), NoRoute)
        self.resolver.set("gone.example", "A", DNSFailure("timed out"))
        self.clock.advance(3600)
        self.failureResultOf(routes.routes_for("lenore.org"), RouteLookupFailed)

    def test_resolve_host(self) -> None:
        self.assertEqual(self.successResultOf(self.routes.resolve_host("::1")), ["::1"])
        self.assertEqual(
            self.successResultOf(self.routes.resolve_host("[::1]")), ["::1"]
        )
        self.resolver.set("lost.lenore.org", "A", answer("A", "127.0.0.3"))
        self.resolver.set("lost.lenore.org", "AAAA", answer("AAAA", "::1"))
        self.assertEqual(
            self.successResultOf(self.routes.resolve_host("Lost.Lenore.org.")),
            ["127.0.0.3", "::1"],
        )
        self.failureResultOf(self.routes.resolve_host("gone.example"), NoRoute)
        self.assertEqual(self.resolver.queries.count(("lost.lenore.org", "A")), 1)
        self.successResultOf(self.routes.resolve_host("lost.lenore.org"))
        self.assertEqual(self.resolver.queries.count(("lost.lenore.org", "A")), 1)

    def test_shared_route_lookup(self) -> None:
        self.resolver.hold = True
        self.resolver.set("lenore.org", "A", answer("A", "127.0.0.3"))
        waiting = [self.routes.routes_for("lenore.org") for _ in range(5)]
        while self.resolver.held:
            self.resolver.release()
        for d in waiting:
            self.assertEqual(len(self.successResultOf(d)), 1)
        self.assertEqual(self.resolver.queries.count(("lenore.org", "MX")), 1)


# ---------------------------------------------------------------------------
# Hosts files


class HostsFileTests(SynchronousTestCase):
    def test_parse(self) -> None:
        signer = DomainSigner(generate_private_key(), "lenore.org")
        record = format_key_record(signer.public_key())
        hosts = parse_hosts(
            [
                "# a private federation\n",
                f'key Lenore.org "{record}"  # quoted\n',
                f"KEY lenore.org\t{record}\n",
                "\n",
                "route lenore.org lost.lenore.org:8000 [::1]:7070 10.0.0.3\n",
                "address lost.lenore.org 10.0.0.3 FD00::3\n",
            ]
        )
        self.assertEqual(hosts.keys, {"lenore.org": [record, record]})
        self.assertEqual(
            hosts.routes,
            {
                "lenore.org": [
                    ("lost.lenore.org", 8000),
                    ("::1", 7070),
                    ("10.0.0.3", 7070),
                ]
            },
        )
        self.assertEqual(hosts.addresses, {"lost.lenore.org": ["10.0.0.3", "fd00::3"]})

    def test_errors_name_the_line(self) -> None:
        for line, words in [
            ("key lenore.org", "expected: key DOMAIN RECORD"),
            ('key lenore.org "v=FMTP1', "unbalanced quotes"),
            ("route lenore.org", "expected: route"),
            ("route lenore.org host:99999", "out of range"),
            ("route bad..domain host:1", "bad domain"),
            ("address lost.lenore.org", "expected: address"),
            ("address lost.lenore.org not-an-ip", "not an IP address"),
            ("server lenore.org", "unknown entry 'server'"),
        ]:
            with self.assertRaises(HostsFileError) as raised:
                parse_hosts(["# first\n", line + "\n"], "/etc/fmtp/hosts")
            self.assertIn("/etc/fmtp/hosts:2: ", str(raised.exception))
            self.assertIn(words, str(raised.exception), line)

    def test_load(self) -> None:
        # Not self.mktemp(): under pytest it would litter the working
        # directory.
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "hosts")
        with open(path, "w", encoding="utf-8") as f:
            f.write("address lost.lenore.org 127.0.0.3\n")
        hosts = load_hosts_file(path)
        self.assertEqual(hosts.addresses["lost.lenore.org"], ["127.0.0.3"])
        with open(path, "wb") as f:
            f.write(b"address \xff 127.0.0.3\n")
        with self.assertRaises(HostsFileError) as raised:
            load_hosts_file(path)
        self.assertIn(path, str(raised.exception))

    @given(st.lists(st.text(max_size=60), max_size=5))
    def test_never_crashes(self, lines: list[str]) -> None:
        try:
            parse_hosts(lines)
        except HostsFileError:
            pass

    def test_default_and_update(self) -> None:
        hosts = parse_hosts(DEFAULT_HOSTS.splitlines(), "<default>")
        hosts.update(HostsFile(routes={"localhost": [("127.0.0.1", 7171)]}))
        self.assertEqual(
            hosts.routes["localhost"], [("localhost", 7070), ("127.0.0.1", 7171)]
        )
        routes = RouteResolver(
            FakeResolver(),
            Clock(),
            static_routes=hosts.routes,
            static_addresses=hosts.addresses,
        )
        found = self.successResultOf(routes.routes_for("localhost"))
        self.assertEqual(found[0], Route("localhost", 7070, "127.0.0.1"))

    def test_keys_feed_the_verifier(self) -> None:
        signer = DomainSigner(generate_private_key(), "lenore.org")
        hosts = parse_hosts(
            [f"key lenore.org {format_key_record(signer.public_key())}"]
        )
        resolver = FakeResolver()
        verifier = DNSKeyVerifier(resolver, Clock(), static=hosts.keys)
        signed = signer.sign_object(message_from("lost@lenore.org"), NOW)
        self.successResultOf(verifier.verify_object(signed))
        self.assertEqual(resolver.queries, [])


def test_hosts_file_without_dnspython() -> None:
    """
    Reading a hosts file (the client's C{--hosts-file}) loads no dnspython,
    slow to import: the L{fmtp.dns} package imports nothing by itself.
    """
    code = (
        "import sys, fmtp.dns.hostsfile, fmtp.cli.reading\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'dns'], "
        "sorted(m for m in sys.modules if m.startswith('dns'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------
# Integration: a real DNS server on loopback


@pytest.fixture
def dns_server():
    server = start_dns_server(
        {"poe.net": zone_text("poe.net"), "lenore.org": zone_text("lenore.org")}
    )
    yield server
    pytest_twisted.blockon(server.stop())


@pytest.fixture
def silent_port():
    port = silent_dns_server()
    yield port.getHost().port
    pytest_twisted.blockon(port.stopListening())


def lenore_zone(*records: str, ttl: int = 300, negative_ttl: int = 300) -> str:
    return zone_text("lenore.org", records, ttl=ttl, negative_ttl=negative_ttl)


@pytest_twisted.ensureDeferred
async def test_resolver_answers(dns_server) -> None:
    """
    Answers carry the records and TTL; "no such records" carries the
    negative TTL from the SOA, for NXDOMAIN and for no data alike.
    """
    dns_server.set_zone(
        "lenore.org",
        lenore_zone(
            "lost 120 IN A 127.0.0.3", "lost 60 IN A 127.0.0.4", negative_ttl=90
        ),
    )
    resolver = dns_server.resolver()
    found = await resolver.query("lost.lenore.org", "A")
    assert sorted(str(r.address) for r in found.rdata) == ["127.0.0.3", "127.0.0.4"]
    assert found.ttl == 60
    with pytest.raises(NoSuchRecords) as raised:
        await resolver.query("lost.lenore.org", "AAAA")
    assert not raised.value.nxdomain and raised.value.negative_ttl == 60
    with pytest.raises(NoSuchRecords) as raised:
        await resolver.query("nobody.lenore.org.", "A")
    assert raised.value.nxdomain and raised.value.negative_ttl == 90
    with pytest.raises(NoSuchRecords):
        await resolver.query("a" * 64 + ".lenore.org", "A")


@pytest.mark.parametrize("flag", ["refusing", "failing"])
@pytest_twisted.ensureDeferred
async def test_resolver_refused_or_failing(dns_server, flag) -> None:
    """
    REFUSED and SERVFAIL are temporary failures, not "no records".
    """
    setattr(dns_server.factory, flag, True)
    with pytest.raises(DNSFailure):
        await dns_server.resolver().query("poe.net", "SOA")


def test_resolver_without_configuration(monkeypatch) -> None:
    """
    With no resolv.conf the server still starts; every query is then a
    temporary failure.
    """
    import dns.resolver

    def missing(self, filename):
        raise dns.resolver.NoResolverConfiguration("no resolv.conf")

    monkeypatch.setattr(dns.resolver.Resolver, "read_resolv_conf", missing)
    resolver = DNSResolver(Clock())
    d = resolver.query("poe.net", "A")
    failures = []
    d.addErrback(failures.append)
    assert failures[0].check(DNSFailure)
    assert "no name server configured" in failures[0].value.message


@pytest_twisted.ensureDeferred
async def test_large_answer_over_tcp(dns_server) -> None:
    """
    An answer too big for a UDP datagram is truncated, and dnspython asks
    again over TCP, on the same port.
    """
    signers = [DomainSigner(generate_private_key(), "poe.net") for _ in range(12)]
    dns_server.set_zone(
        "poe.net",
        fmtp_zone("poe.net", "127.0.0.2", 7070, [s.public_key() for s in signers]),
    )
    verifier = DNSKeyVerifier(dns_server.resolver(), reactor)
    keys = await verifier.keys_for_domain("poe.net")
    assert {k.fingerprint for k in keys} == {s.fingerprint for s in signers}
    assert dns_server.factory.tcp_connections == 1


@pytest_twisted.ensureDeferred
async def test_keys_and_rotation(dns_server) -> None:
    """
    Two records published at once: objects signed by the old key and by
    the new verify side by side.  Then the old one is revoked, and once
    the cache expires its signatures are refused.
    """
    old = DomainSigner(generate_private_key(), "poe.net")
    new = DomainSigner(generate_private_key(), "poe.net")
    dns_server.set_zone(
        "poe.net",
        fmtp_zone("poe.net", "127.0.0.2", 7070, [old.public_key(), new.public_key()]),
    )
    clock = Clock()
    clock.advance(NOW)
    verifier = DNSKeyVerifier(dns_server.resolver(), clock)
    by_old = old.sign_object(message_from("edgar@poe.net"), NOW)
    by_new = new.sign_object(message_from("edgar@poe.net"), NOW)
    assert await verifier.verify_object(by_old) == old.public_key()
    assert await verifier.verify_object(by_new) == new.public_key()

    revocation = DomainPublicKey.revocation("poe.net", old.fingerprint)
    dns_server.set_zone(
        "poe.net",
        fmtp_zone("poe.net", "127.0.0.2", 7070, [new.public_key(), revocation]),
    )
    # Still cached: the revocation is seen when the TTL runs out.
    assert await verifier.verify_object(by_old) == old.public_key()
    clock.advance(300)
    with pytest.raises(BadSignature, match="revoked"):
        await verifier.verify_object(by_old)
    assert await verifier.verify_object(by_new) == new.public_key()


@pytest_twisted.ensureDeferred
async def test_expired_and_bad_records(dns_server) -> None:
    private = generate_private_key()
    expired = DomainSigner(private, "poe.net")
    good = DomainSigner(generate_private_key(), "poe.net")
    expired_key = DomainPublicKey.from_public_key(
        "poe.net", private.public_key(), not_after=NOW - 1
    )
    dns_server.set_zone(
        "poe.net",
        fmtp_zone(
            "poe.net",
            "127.0.0.2",
            7070,
            [expired_key, good.public_key(), "v=FMTP1; k=ed25519; p=not-base64"],
            extra=['fmtpkey IN TXT "google-site-verification=xyz"'],
        ),
    )
    clock = Clock()
    clock.advance(NOW)
    verifier = DNSKeyVerifier(dns_server.resolver(), clock)
    keys = await verifier.keys_for_domain("poe.net")
    assert {k.fingerprint for k in keys} == {expired.fingerprint, good.fingerprint}
    with pytest.raises(BadSignature, match="expired"):
        await verifier.verify_object(
            expired.sign_object(message_from("edgar@poe.net"), NOW)
        )
    await verifier.verify_object(good.sign_object(message_from("edgar@poe.net"), NOW))


@pytest_twisted.ensureDeferred
async def test_no_key(dns_server) -> None:
    verifier = DNSKeyVerifier(dns_server.resolver(), Clock())
    with pytest.raises(NoKeyPublished):
        await verifier.keys_for_domain("poe.net")
    with pytest.raises(NoKeyPublished):
        await verifier.keys_for_domain("elsewhere.example")
    dns_server.set_zone(
        "poe.net", zone_text("poe.net", [key_txt("v=FMTP1; k=ed25519; p=AAAA")])
    )
    with pytest.raises(NoKeyPublished):
        await DNSKeyVerifier(dns_server.resolver(), Clock()).keys_for_domain("poe.net")


@pytest_twisted.ensureDeferred
async def test_server_not_answering(silent_port) -> None:
    resolver = DNSResolver(reactor, [("127.0.0.1", silent_port)], timeout=0.2)
    verifier = DNSKeyVerifier(resolver, Clock())
    with pytest.raises(KeyLookupFailed, match="timed out"):
        await verifier.keys_for_domain("poe.net")
    routes = RouteResolver(resolver, Clock())
    with pytest.raises(RouteLookupFailed):
        await routes.routes_for("lenore.org")


@pytest_twisted.ensureDeferred
async def test_routes_by_srv(dns_server) -> None:
    dns_server.set_zone(
        "lenore.org",
        lenore_zone(
            "_fmtp._tcp IN SRV 10 10 8000 lost",
            "_fmtp._tcp IN SRV 20 10 7070 backup",
            "lost IN A 127.0.0.3",
            "lost IN AAAA ::1",
            "backup IN A 127.0.0.4",
            "@ IN MX 10 mail",
            "mail IN A 127.0.0.9",
        ),
    )
    routes = RouteResolver(dns_server.resolver(), Clock())
    assert await routes.routes_for("lenore.org") == [
        Route("lost.lenore.org", 8000, "127.0.0.3"),
        Route("lost.lenore.org", 8000, "::1"),
        Route("backup.lenore.org", 7070, "127.0.0.4"),
    ]


@pytest_twisted.ensureDeferred
async def test_routes_by_mx_and_address(dns_server) -> None:
    dns_server.set_zone(
        "lenore.org", lenore_zone("@ IN MX 10 mail", "mail IN A 127.0.0.3")
    )
    dns_server.set_zone("poe.net", zone_text("poe.net", ["@ IN A 127.0.0.2"]))
    routes = RouteResolver(dns_server.resolver(), Clock(), default_port=7000)
    assert await routes.routes_for("lenore.org") == [
        Route("mail.lenore.org", 7000, "127.0.0.3")
    ]
    assert await routes.routes_for("poe.net") == [Route("poe.net", 7000, "127.0.0.2")]
    with pytest.raises(NoRoute):
        await routes.routes_for("nowhere.poe.net")


@pytest_twisted.ensureDeferred
async def test_no_service(dns_server) -> None:
    """
    A null MX, and an SRV record with target ".", say "no fmtp here".
    """
    dns_server.set_zone("lenore.org", lenore_zone("@ IN MX 0 .", "@ IN A 127.0.0.3"))
    dns_server.set_zone(
        "poe.net",
        zone_text("poe.net", ["_fmtp._tcp IN SRV 0 0 0 .", "@ IN MX 10 mail"]),
    )
    routes = RouteResolver(dns_server.resolver(), Clock())
    with pytest.raises(NoRoute, match="null MX"):
        await routes.routes_for("lenore.org")
    with pytest.raises(NoRoute, match="no fmtp service"):
        await routes.routes_for("poe.net")


@pytest_twisted.ensureDeferred
async def test_static_routes_win(dns_server) -> None:
    """
    Hosts-file routes win over DNS; their host names are resolved through
    the same DNS server, never the system's.
    """
    dns_server.set_zone(
        "lenore.org",
        lenore_zone("_fmtp._tcp IN SRV 10 10 8000 lost", "lost IN A 127.0.0.3"),
    )
    dns_server.set_zone("poe.net", zone_text("poe.net", ["relay IN A 127.0.0.2"]))
    routes = RouteResolver(
        dns_server.resolver(),
        Clock(),
        static_routes={"lenore.org": [("relay.poe.net", 9000)]},
    )
    assert await routes.routes_for("lenore.org") == [
        Route("relay.poe.net", 9000, "127.0.0.2")
    ]
    assert await routes.resolve_host("lost.lenore.org") == ["127.0.0.3"]
