"""
Ed25519 signing that holds the GIL: libsodium's C{crypto_sign_ed25519_detached}
called through C{ctypes.PyDLL}, where the system has libsodium.

C{cryptography} releases the GIL while it signs.  In a server whose
reactor shares a core with the store's thread, which waits for the GIL
whenever a commit returns, each release can hand the core and the GIL to
that thread, and the reactor then waits for both: a 40 µs signature cost
the reactor over 200 µs in a burst (doc/performance.md).  A signature is
too short for another thread to make use of the release, so this one is
made without it.  Ed25519 is deterministic (RFC 8032): both libraries
make the same 64 bytes from the same key and data, which the tests check.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

_SIGNATURE_BYTES = 64


#: The names libsodium is installed under, tried with C{dlopen} before
#: C{ctypes.util.find_library}, which runs C{ldconfig}.
_SODIUM_NAMES = (
    "libsodium.so.26",
    "libsodium.so.23",
    "libsodium.so",
    "libsodium.dylib",
)


def _open_sodium() -> ctypes.PyDLL | None:
    for name in _SODIUM_NAMES:
        try:
            return ctypes.PyDLL(name)
        except OSError:
            pass
    found = ctypes.util.find_library("sodium")
    if found is None:
        return None
    try:
        return ctypes.PyDLL(found)
    except OSError:
        return None


def _load_sodium() -> ctypes.PyDLL | None:
    """
    libsodium, loaded so that its calls keep the GIL, or L{None}.
    """
    sodium = _open_sodium()
    if sodium is None:
        return None
    try:
        if sodium.sodium_init() < 0:
            return None
        sign = sodium.crypto_sign_ed25519_detached
    except AttributeError:
        return None
    sign.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulonglong,
        ctypes.c_char_p,
    ]
    sign.restype = ctypes.c_int
    return sodium


_sodium = _load_sodium()


def gil_holding_signer(
    private_key: Ed25519PrivateKey,
) -> Callable[[bytes], bytes] | None:
    """
    A function that signs bytes with C{private_key} without releasing the
    GIL, or L{None} where libsodium is not installed (then sign with
    C{private_key.sign}).
    """
    if _sodium is None:
        return None
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    # libsodium's secret key is the seed followed by the public key.
    secret = ctypes.create_string_buffer(seed + public, 64)
    detached = _sodium.crypto_sign_ed25519_detached

    def sign(data: bytes) -> bytes:
        signature = ctypes.create_string_buffer(_SIGNATURE_BYTES)
        if detached(signature, None, data, len(data), secret) != 0:
            raise ValueError("libsodium could not sign")
        return signature.raw

    return sign
