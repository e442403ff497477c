"""Canonical, versioned bytes for messages and records, and the one digest function.

Encoding is msgpack via msgspec with array-like structs, so a value has exactly one encoding.
Frames start with a version byte. Imports: stdlib, msgspec.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import msgspec

from .errors import DecodeError
from .messages import Message, PrePrepare, Request

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# memoised tx hashes: an LRU bounded in bytes (it holds the requests, and a peer's refused
# messages pass through it too), of requests up to 1/64 of it each (bigger ones are hashed anew:
# hashing them dominates re-encoding anyway)
REQUEST_DIGEST_CACHE_BYTES = 8 * 1024 * 1024
_CACHE_ENTRY_OVERHEAD = 320

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)
_VERSION = bytes([WIRE_VERSION])


def encode_raw(value: Any) -> bytes:
    """Canonical msgpack encoding (no version byte)."""
    return _encoder.encode(value)


def encode(msg: Message) -> bytes:
    """Wire bytes of a message: version byte + canonical encoding."""
    return _VERSION + _encoder.encode(msg)


def decode(data: bytes) -> Message:
    """Parse wire bytes; raises DecodeError on anything malformed, oversized or unknown,
    nested too deep, or with a value outside the bounds declared in `messages` (the only
    exception peer bytes can raise here)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if not data or data[0] != WIRE_VERSION:
        raise DecodeError("unknown wire version" if data else "empty message")
    try:
        return _decoder.decode(memoryview(data)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
        raise DecodeError(str(exc)[:200]) from exc
    except RecursionError as exc:  # nesting deeper than any of our types: hostile bytes
        raise DecodeError("message nested too deep") from exc


def digest(data: bytes) -> bytes:
    """The project's one digest function: BLAKE2b-256."""
    return hashlib.blake2b(data, digest_size=32).digest()


def signing_bytes(msg: Any) -> bytes:
    """Bytes a signature covers: the canonical encoding with `sig` emptied. A PRE-PREPARE's
    covers its header (requests emptied too): the digest commits to the batch, and a header
    alone stays verifiable in view changes and proofs (consensus.bodies)."""
    if type(msg) is PrePrepare:
        return _encoder.encode(msgspec.structs.replace(msg, requests=(), sig=b""))
    return _encoder.encode(msgspec.structs.replace(msg, sig=b""))


class _DigestCache:
    """request -> digest, least recently used first, at most REQUEST_DIGEST_CACHE_BYTES."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.nbytes = 0
        self._d: OrderedDict[Request, bytes] = OrderedDict()

    def __call__(self, req: Request) -> bytes:
        d = self._d.get(req)
        if d is not None:
            self._d.move_to_end(req)
            return d
        d = digest(signing_bytes(req))
        cost = len(req.op) + _CACHE_ENTRY_OVERHEAD
        if cost <= self.limit // 64:
            self._d[req] = d
            self.nbytes += cost
            while self.nbytes > self.limit:
                old, _ = self._d.popitem(last=False)
                self.nbytes -= len(old.op) + _CACHE_ENTRY_OVERHEAD
        return d

    def cache_clear(self) -> None:
        self._d.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._d)


request_digest = _DigestCache(REQUEST_DIGEST_CACHE_BYTES)
"""Transaction hash: digest of the signed content (excludes the signature). Memoised (a frozen
request is hashable; equal requests have equal digests): one tx's hash is needed ~10 times per
node (batch digest, admission, execution, storage, RPC)."""


def batch_digest(time_ms: int, requests: tuple[Request, ...]) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    h.update(time_ms.to_bytes(8, "big", signed=True))
    for r in requests:
        h.update(request_digest(r))
    return h.digest()


GENESIS_CHAIN_DIGEST = bytes(32)


def chain_digest(prev: bytes, seq: int, batch: bytes) -> bytes:
    """Block hash: links the previous block hash, the height and the batch digest."""
    return digest(prev + seq.to_bytes(8, "big") + batch)
