"""Wire format and signatures: canonical bytes, versioning, size limits, domain separation."""

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus import (
    Authenticator,
    DecodeError,
    Ed25519Signer,
    Ed25519Verifier,
    FastSigner,
    FastVerifier,
    Prepare,
    Request,
    decode,
    encode,
    request_digest,
    sign_request,
)
from consensus.codec import MAX_MESSAGE_BYTES, batch_digest


def _auth(i: int, domain: bytes = b"chain-a", fast: bool = False) -> Authenticator:
    cls, ver = (FastSigner, FastVerifier) if fast else (Ed25519Signer, Ed25519Verifier)
    keys = [cls.from_seed_int(j).public_key for j in range(4)]
    return Authenticator(domain, cls.from_seed_int(i), ver(), keys)


@given(
    view=st.integers(0, 2**40),
    seq=st.integers(0, 2**40),
    digest=st.binary(min_size=32, max_size=32),
    replica=st.integers(0, 3),
)
def test_every_message_roundtrips_through_its_one_encoding(view, seq, digest, replica):
    msg = Prepare(view=view, seq=seq, digest=digest, replica=replica, sig=b"s" * 64)
    data = encode(msg)
    assert decode(data) == msg
    assert encode(decode(data)) == data


@pytest.mark.parametrize(
    "data",
    [b"", b"\x02" + encode(Prepare(0, 0, b"", 0))[1:], b"\x01\xff\xff", b"\x01" + b"\x00" * 10],
)
def test_malformed_bytes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode(data)


def test_oversized_message_is_refused_before_parsing():
    with pytest.raises(DecodeError, match="exceeds"):
        decode(b"\x01" + b"\x00" * MAX_MESSAGE_BYTES)


@given(junk=st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_decode_error(junk):
    try:
        decode(b"\x01" + junk)
    except DecodeError:
        pass


@pytest.mark.parametrize("fast", [False, True])
def test_signature_binds_signer_content_and_chain(fast):
    a0, a1 = _auth(0, fast=fast), _auth(1, fast=fast)
    msg = a0.sign(Prepare(view=1, seq=2, digest=b"d" * 32, replica=0))
    assert a1.verify(msg)
    # claiming another replica, changing content, or another chain's domain all fail
    assert not a1.verify(msgspec.structs.replace(msg, replica=1))
    assert not a1.verify(msgspec.structs.replace(msg, seq=3))
    assert not _auth(1, domain=b"chain-b", fast=fast).verify(msg)
    assert not a1.verify(msgspec.structs.replace(msg, replica=7))


def test_client_request_signature_and_tx_hash_ignore_nothing_but_sig():
    client = Ed25519Signer.from_seed_int(42, b"client")
    req = sign_request(b"chain-a", client, Request(b"", 1, b"op", valid_until=9))
    assert _auth(0).verify_request(req)
    assert not _auth(0).verify_request(msgspec.structs.replace(req, op=b"other"))
    assert request_digest(req) == request_digest(msgspec.structs.replace(req, sig=b""))
    assert request_digest(req) != request_digest(msgspec.structs.replace(req, request_seq=2))


def test_batch_digest_covers_time_and_order():
    c = FastSigner.from_seed_int(1)
    r1 = sign_request(b"x", c, Request(b"", 1, b"a"))
    r2 = sign_request(b"x", c, Request(b"", 2, b"b"))
    assert batch_digest(5, (r1, r2)) != batch_digest(6, (r1, r2))
    assert batch_digest(5, (r1, r2)) != batch_digest(5, (r2, r1))
