"""
Unit tests of L{fmtp.keys.gilsign}: Ed25519 through libsodium, keeping the
GIL, makes the very signatures C{cryptography} makes.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from fmtp.keys import gilsign
from fmtp.keys.signing import DomainSigner

NOW = 1_700_000_000.0


class GILHoldingSignerTests(SynchronousTestCase):
    def setUp(self) -> None:
        if gilsign._sodium is None:
            raise self.skipTest("libsodium is not installed here")
        self.key = Ed25519PrivateKey.generate()
        self.sign = gilsign.gil_holding_signer(self.key)

    def test_same_signatures(self) -> None:
        """
        Ed25519 is deterministic: libsodium's signature of any data is
        cryptography's, and it verifies.
        """
        for data in [b"", b"x", b"fmtp-signature/1\n" + bytes(range(256)) * 40]:
            signature = self.sign(data)
            self.assertEqual(signature, self.key.sign(data))
            self.key.public_key().verify(signature, data)


class FallbackTests(SynchronousTestCase):
    def test_not_installed(self) -> None:
        """
        A system without libsodium (no name opens, C{find_library} finds
        none) has no GIL-holding signer, and no error.
        """
        self.patch(gilsign, "_SODIUM_NAMES", ("libfmtp-test-nonexistent.so.1",))
        self.patch(gilsign.ctypes.util, "find_library", lambda name: None)
        self.assertIsNone(gilsign._load_sodium())

    def test_without_sodium(self) -> None:
        """
        Without libsodium, a domain signs with cryptography.
        """
        self.patch(gilsign, "_sodium", None)
        key = Ed25519PrivateKey.generate()
        self.assertIsNone(gilsign.gil_holding_signer(key))
        signer = DomainSigner(key, "poe.net")
        info = signer.sign_bytes(b"data", NOW)
        self.assertEqual(info.signature, key.sign(b"data"))
