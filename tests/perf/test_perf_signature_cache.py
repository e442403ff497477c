"""The node's verified-signature cache: a signature checked by the RPC layer is not checked
again by the replica; a bad signature is never cached; the cache is bounded."""

from __future__ import annotations

from bftnode.node.verify_cache import CachingVerifier
from consensus import Ed25519Signer, Ed25519Verifier


class CountingVerifier(Ed25519Verifier):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool:
        self.calls += 1
        return super().verify(public_key, data, sig)


def test_a_verified_signature_is_not_verified_again():
    s = Ed25519Signer.from_seed_int(1)
    inner = CountingVerifier()
    v = CachingVerifier(inner)
    sig = s.sign(b"tx")
    assert v.verify(s.public_key, b"tx", sig)
    assert v.verify(s.public_key, b"tx", sig)
    assert inner.calls == 1 and v.hits == 1


def test_a_bad_signature_is_never_cached_and_other_bytes_miss():
    s = Ed25519Signer.from_seed_int(1)
    other = Ed25519Signer.from_seed_int(2)
    inner = CountingVerifier()
    v = CachingVerifier(inner)
    sig = s.sign(b"tx")
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not v.verify(s.public_key, b"tx", bad)
    assert not v.verify(s.public_key, b"tx", bad)
    assert v.verify(s.public_key, b"tx", sig)
    assert not v.verify(s.public_key, b"tx2", sig)  # same signature, other message
    assert not v.verify(other.public_key, b"tx", sig)  # same signature, other key
    assert inner.calls == 5 and v.hits == 0


def test_the_cache_is_bounded_and_evicts_the_oldest():
    s = Ed25519Signer.from_seed_int(1)
    inner = CountingVerifier()
    v = CachingVerifier(inner, size=3)
    sigs = [(b"m%d" % i, s.sign(b"m%d" % i)) for i in range(5)]
    for m, sig in sigs:
        assert v.verify(s.public_key, m, sig)
    assert len(v) == 3
    assert v.verify(s.public_key, *sigs[-1]) and v.hits == 1
    assert v.verify(s.public_key, *sigs[0]) and inner.calls == 6  # evicted: verified again
