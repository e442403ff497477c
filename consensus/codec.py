"""Canonical, versioned bytes for messages and records, and the one digest function.

Encoding is msgpack via msgspec with array-like structs, so a value has exactly one encoding.
Frames start with a version byte. Imports: stdlib, msgspec.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import msgspec

from .errors import DecodeError
from .messages import Message, PrePrepare, Request

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
REQUEST_DIGEST_CACHE = 16_384  # memoised tx hashes (bounded LRU; holds the requests)

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


@functools.lru_cache(maxsize=REQUEST_DIGEST_CACHE)
def request_digest(req: Request) -> bytes:
    """Transaction hash: digest of the signed content (excludes the signature).

    Memoised (a frozen request is hashable; equal requests have equal digests): one tx's hash
    is needed ~10 times per node (batch digest, admission, execution, storage, RPC)."""
    return digest(signing_bytes(req))


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
