"""Counter-examples found on the peer input path (issue 25), kept as regression tests.

Each test feeds the exact frame through the node's pump as a function (`feed`: decode, drop
bare requests, step, apply what the shell applies) on a replica of the scenario it was found
in. Frames are signed by the (deterministic, fast) test keys exactly as found; at the commit
that fixed a class the frame may no longer decode, which is the fix, not a skip.

Found by tests/unit/consensus/test_peer_input_total.py (Hypothesis) and tests/fuzz/fuzz_peer.py
(atheris) at cb008f2 unless said otherwise:
- OverflowError out of Replica.step: a time_ms >= 2^63 reached `batch_digest`'s 8-byte signed
  conversion (a PRE-PREPARE from the primary; a VIEW-CHANGE's prepared proof from ANY one
  replica). Fixed by 22305d0 (integer fields bounded at decode).
- RecursionError out of codec.decode: an element nested 100,000 deep (a trailing extra field
  or a field of the wrong type). Fixed by 22305d0.
- Memory held by refused messages: request_digest's LRU (16,384 entries, counted not sized)
  kept every request it hashed, also those of messages refused right after; one replica's
  VIEW-CHANGEs carrying 1 MB requests kept 1 MB each. Open at d168ebd, fixed by 62e6c8b.
"""

from __future__ import annotations

import gc
import tracemalloc

import msgspec
import pytest

from consensus import (
    BlockSync,
    CommittedBlock,
    PreparedProof,
    PrePrepare,
    Request,
    Tick,
    ViewChange,
    batch_digest,
    codec,
)
from consensus.codec import GENESIS_CHAIN_DIGEST, encode, request_digest
from tests.unit.consensus.wire_strategies import feed, replay, worlds

_enc = msgspec.msgpack.Encoder()


def _raw_signed(w, rid: int, fields: list) -> bytes:
    """Wire bytes of [tag, *fields, sig], signed by replica `rid` over the domain and the
    encoding with an empty sig, whatever the values (how the frame was signed when found)."""
    sig = w.cluster.signers[rid].sign(w.domain + _enc.encode([*fields, b""]))
    return b"\x01" + _enc.encode([*fields, sig])


def _no_crash(w, sender: int, data: bytes) -> None:
    r = w.fresh_replica()
    feed(r, sender, data, w)  # must not raise
    r.step(Tick(w.now + 1))


# ---------------------------------------------------------------- OverflowError in batch_digest


@pytest.mark.parametrize("time_ms", [2**63, 2**64 - 1])
def test_a_pre_prepare_from_the_primary_with_time_past_int64(time_ms):
    """[2, view 0, seq 1, time_ms, [], 32 zero bytes, replica 0] signed by the primary, to a
    backup: OverflowError('int too big to convert') in batch_digest via check_pre_prepare."""
    w = worlds()["fresh"]
    data = _raw_signed(w, 0, [2, 0, 1, time_ms, [], bytes(32), 0])
    _no_crash(w, 0, data)


def test_a_view_change_whose_prepared_proof_has_time_past_int64():
    """Found by Hypothesis in the one-Byzantine-peer mode (only the sender's key): replica 0
    sends a VIEW-CHANGE (new view 2^64-1) whose prepared proof holds a pre-prepare with
    time_ms 2^63; verify_view_change -> verify_pre_prepare_content -> batch_digest raised
    OverflowError. The inner pre-prepare needs no valid signature: the digest is computed
    first."""
    w = worlds()["catching-up"]
    pp = [2, 1, w.replica.stable_seq + 1, 2**63, [], bytes(32), 1, b"\x00" * 64]
    data = _raw_signed(w, 0, [7, 2**64 - 1, 0, GENESIS_CHAIN_DIGEST, [], [[6, pp, []]], 0])
    _no_crash(w, 0, data)


# ---------------------------------------------------------------- RecursionError in decode


@pytest.mark.parametrize("where", ["trailing", "field"])
def test_an_element_nested_100000_deep(where):
    """A STATUS from replica 2 with one more element (trailing) or its view field replaced by
    [[[...nil...]]] 100,000 deep: RecursionError ('maximum recursion depth exceeded while
    deserializing an object') escaped codec.decode, so the pump's DecodeError handler did not
    catch it."""
    w = worlds()["committed"]
    deep = b"\x91" * 100_000 + b"\xc0"
    body = _enc.encode([10, 0, False, 0, 0, 2, b"\x00" * 64])
    if where == "trailing":
        data = b"\x01" + bytes([body[0] + 1]) + body[1:] + deep
    else:
        data = b"\x01" + body[:2] + deep + body[3:]
    _no_crash(w, 2, data)


# ---------------------------------------------------------------- memory held by refusals


def _carrier(w, r, kind: str, req: Request, now: int) -> tuple[int, bytes]:
    """(sender, frame): a message carrying `req` that the replica refuses after hashing it."""
    c = w.cluster
    if kind == "view-change":  # a prepared proof without prepares, from replica 2
        pp = c.auth(2).sign(PrePrepare(2, r.stable_seq + 1, now, (req,),
                                       batch_digest(now, (req,)), 2))
        return 2, encode(c.auth(2).sign(ViewChange(r.view + 3, 0, GENESIS_CHAIN_DIGEST, (),
                                                   (PreparedProof(pp, ()),), 2)))
    if kind == "pre-prepare":  # from the primary, the request's client signature is bad
        p = w.config.primary(r.view)
        pp = PrePrepare(r.view, r.last_executed + 1, now, (req,), batch_digest(now, (req,)), p)
        return p, encode(c.auth(p).sign(pp))
    # block-sync: an executed seq with another batch and no commit certificate, from 2
    pp = PrePrepare(0, 1, now, (req,), batch_digest(now, (req,)), 0)
    return 2, encode(c.auth(2).sign(BlockSync((CommittedBlock(pp, ()),), 2)))


def _retained_mb(w, kind: str, messages: int, op_bytes: int) -> tuple[float, int]:
    """Bytes still allocated after `messages` refused messages of `kind`, each carrying one
    request of `op_bytes`, went through the replica (and were dropped by the caller)."""
    r = w.fresh_replica()
    now = w.now
    evidence = 0
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for k in range(messages):
            req = Request(bytes(32), k, k.to_bytes(4, "big") * (op_bytes // 4))
            sender, data = _carrier(w, r, kind, req, now)
            del req
            _, out = feed(r, sender, data, w)
            evidence += len(out.evidence) if out is not None else 0
            del out, data
            now += w.config.status_interval_ms * 10  # within any per-peer budget
            r.step(Tick(now))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return held / 1e6, evidence


@pytest.mark.parametrize("kind", ["view-change", "pre-prepare", "block-sync"])
def test_refused_messages_hold_no_more_than_the_digest_memo_bound(kind):
    """Each message is refused after its requests were hashed, yet at d168ebd every request
    stayed in request_digest's LRU (16,384 entries of any size; freed by cache_clear): 100
    refused VIEW-CHANGEs with a 100 KB request each held ~10 MB (40 x 256 KB: 10.8 MB), and
    8 MiB frames let one replica make an honest one hold gigabytes. Fixed by 62e6c8b (the memo
    is bounded in bytes): what stays is at most that bound."""
    request_digest.cache_clear()
    bound_mb = getattr(codec, "REQUEST_DIGEST_CACHE_BYTES", 0) / 1e6
    w = worlds()["committed"]
    for op_bytes in (100 * 1024, 256 * 1024):
        held_mb, evidence = _retained_mb(w, kind, 100, op_bytes)
        assert evidence >= 1  # refused, and said so (some may be rate limited)
        assert held_mb < bound_mb + 1.5, (
            f"{held_mb:.1f} MB retained after 100 refused {kind} messages of {op_bytes} B")


# ---------------------------------------------------------------- fuzzer inputs, replayed exactly

FUZZ_TIME_PAST_INT64 = bytes.fromhex(
    "38e60198020004cfe2f883d6c2ded947929601c42076ba86ab7dbf8b7b4274e03f9e4d5df9734ec8b5656bc2"
    "eb0c4c295dfd73e416ccc9c4026f7010c4200e3456eda1dab8b75489b54e9e8841c9000cfd2520364c2044c7"
    "8d330a8f539b9601c42077f96669188333e5fc0af3bdd3328a6cfd046dd27eaff7fae737a9c300842ba8ccc8"
    "c4016fcffa0ea45710ad31cfc42005c17be7b8efd01c3d757846048eb50f374014c6b7f0346ca95738930efd"
    "4d37c4200a3f87f38fc041e48dc112d2335a1b4c9c4d71fa82d04dcd07ab7db5e3f1b53f00c44037406afe45"
    "d3b3ba64b67a45a4bf5165ced1d9ee22287cbe9b54263322647c25bcc358c66700a8a7457ae5c1316a04d878"
    "79553ddc14485c4cf3aa834907561d"
)


def test_fuzzer_input_pre_prepare_time_past_int64():
    """tests/fuzz/fuzz_peer.py at cb008f2, first minute: scenario byte 0x38 (catching-up),
    sender/flags 0xe6 (time passes after), frame PRE-PREPARE view 0 seq 4 time_ms
    0xe2f883d6c2ded947 (> 2^63) with two requests, re-signed by the primary: OverflowError in
    batch_digest (normal.check_pre_prepare via Replica.on_pre_prepare)."""
    replay(FUZZ_TIME_PAST_INT64)  # must not raise
