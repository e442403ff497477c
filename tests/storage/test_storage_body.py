"""Block bodies store each tx once (derived from the signed pre-prepare) and still decode the
older layout that stored the executed txs explicitly."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from consensus import CommittedBlock, PrePrepare, Request
from storage.records import BlockBody, body_for, decode, encode


def _req(c: int, seq: int) -> Request:
    return Request(bytes([c]) * 32, seq, b"op%d" % seq, 0, b"s" * 64)


def _committed(reqs: tuple[Request, ...]) -> CommittedBlock:
    return CommittedBlock(PrePrepare(0, 1, 5, reqs, b"d" * 32, 0, b"x" * 64), ())


def _split(reqs: tuple[Request, ...]) -> tuple[tuple[Request, ...], tuple[tuple[Request, str], ...]]:
    # the executor's rule in miniature: a second copy of a request is skipped
    run, skipped, seen = [], [], set()
    for r in reqs:
        key = (r.client_id, r.request_seq)
        if key in seen:
            skipped.append((r, "duplicate"))
        else:
            run.append(r)
            seen.add(key)
    return tuple(run), tuple(skipped)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), max_size=12))
def test_body_roundtrip_derives_the_executed_txs(pairs: list[tuple[int, int]]) -> None:
    reqs = tuple(_req(c, s) for c, s in pairs)
    run, skipped = _split(reqs)
    body = body_for(run, skipped, _committed(reqs))
    assert body.from_batch and body.txs == ()
    back = decode(BlockBody, encode(body), b"K")
    assert back.executed() == run
    assert back.skipped == skipped


def test_body_stores_each_tx_once() -> None:
    reqs = tuple(_req(1, s) for s in range(50))
    old = encode(BlockBody(reqs, (), _committed(reqs)))
    new = encode(body_for(reqs, (), _committed(reqs)))
    assert len(new) < 0.6 * len(old)


def test_body_keeps_explicit_txs_when_not_a_subsequence() -> None:
    reqs = (_req(1, 1), _req(1, 2))
    run = (_req(1, 2), _req(1, 1))  # out of batch order: cannot be derived
    body = body_for(run, (), _committed(reqs))
    assert not body.from_batch
    assert decode(BlockBody, encode(body), b"K").executed() == run


def test_old_layout_still_decodes() -> None:
    reqs = (_req(1, 1), _req(2, 1))

    class OldBody(msgspec.Struct, frozen=True, array_like=True):
        txs: tuple[Request, ...]
        skipped: tuple[tuple[Request, str], ...]
        committed: CommittedBlock

    raw = msgspec.msgpack.encode(OldBody(reqs[:1], ((reqs[1], "expired"),), _committed(reqs)))
    body = decode(BlockBody, raw, b"K")
    assert not body.from_batch
    assert body.executed() == reqs[:1]
