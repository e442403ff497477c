"""Signing and verification of messages (Ed25519 via PyNaCl, plus a fast test scheme).

Owns the Signer/Verifier protocols and `Authenticator`, which binds a chain's domain tag and the
validator keys. Signatures cover `domain + codec.signing_bytes(msg)`, so a message signed for
one chain is invalid on another. Imports: stdlib, pynacl, msgspec (via codec).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import nacl.exceptions
import nacl.signing

from .codec import signing_bytes
from .messages import Request


class Signer(Protocol):
    public_key: bytes

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool: ...


class Ed25519Signer:
    def __init__(self, seed: bytes) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def from_seed_int(cls, i: int, domain: bytes = b"test") -> Ed25519Signer:
        """Deterministic key for tests and the simulator."""
        return cls(hashlib.blake2b(domain + i.to_bytes(8, "big"), digest_size=32).digest())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data).signature


class Ed25519Verifier:
    def __init__(self, max_cached_keys: int = 4096) -> None:
        self._keys: dict[bytes, nacl.signing.VerifyKey] = {}
        self._max = max_cached_keys

    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool:
        if len(sig) != 64 or len(public_key) != 32:
            return False
        key = self._keys.get(public_key)
        if key is None:
            try:
                key = nacl.signing.VerifyKey(public_key)
            except (nacl.exceptions.CryptoError, ValueError, TypeError):
                return False
            if len(self._keys) >= self._max:
                self._keys.clear()
            self._keys[public_key] = key
        try:
            key.verify(data, sig)
            return True
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False


class FastSigner:
    """Keyed-hash 'signature' for simulator breadth. NOT secure: anyone knowing the public key
    can compute it. Forged-signature scenarios must use Ed25519."""

    def __init__(self, seed: bytes) -> None:
        self.public_key = hashlib.blake2b(b"pk" + seed, digest_size=32).digest()

    @classmethod
    def from_seed_int(cls, i: int, domain: bytes = b"test") -> FastSigner:
        return cls(domain + i.to_bytes(8, "big"))

    def sign(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self.public_key, digest_size=64).digest()


class FastVerifier:
    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool:
        if len(public_key) != 32:
            return False
        return hashlib.blake2b(data, key=public_key, digest_size=64).digest() == sig


class Authenticator:
    """Signs our messages and verifies others' against the validator set of one chain."""

    def __init__(
        self,
        domain: bytes,
        signer: Signer,
        verifier: Verifier,
        replica_keys: Sequence[bytes],
    ) -> None:
        self.domain = domain
        self.signer = signer
        self.verifier = verifier
        self.replica_keys = tuple(replica_keys)

    def sign(self, msg: Any) -> Any:
        sig = self.signer.sign(self.domain + signing_bytes(msg))
        return msgspec.structs.replace(msg, sig=sig)

    def verify(self, msg: Any) -> bool:
        """True iff `msg.sig` is valid for the validator named by `msg.replica`."""
        rid = msg.replica
        if not isinstance(rid, int) or not 0 <= rid < len(self.replica_keys):
            return False
        return self.verifier.verify(
            self.replica_keys[rid], self.domain + signing_bytes(msg), msg.sig
        )

    def verify_request(self, req: Request) -> bool:
        return self.verifier.verify(req.client_id, self.domain + signing_bytes(req), req.sig)


def sign_request(domain: bytes, signer: Signer, req: Request) -> Request:
    """Client-side helper: sign a request for the chain identified by `domain`."""
    req = msgspec.structs.replace(req, client_id=signer.public_key)
    return msgspec.structs.replace(req, sig=signer.sign(domain + signing_bytes(req)))
