"""Proven application reads (bftnode.app.proven_state): a query run over the RecordingReader
answers what it answers over the plain state; the same query re-run over a ProvenReader of the
recorded ranges (after their proofs verify) answers the same; a reader missing any recorded
range is incomplete, never silently wrong."""

from __future__ import annotations

from functools import partial

import pytest

from bftnode.app import KVApplication, ops
from bftnode.app.proven_state import (
    PAGE_FIRST,
    IncompleteRead,
    ProvenReader,
    RecordingReader,
    block_time,
    check_ranges,
)
from storage import ProofError, keys
from storage.memory import _MemoryKV
from storage.merkle_tree import AuthTree

QUERIES = [
    ("kv_get", {"key": b"k/03"}),
    ("kv_get", {"key": b"missing"}),
    ("kv_range", {"key": b"k/", "limit": 50}),
    ("kv_range", {"key": b"k/", "limit": 3}),
    ("kv_range", {"key": b"", "limit": 100}),
    ("kv_range", {"key": b"k/0", "count_only": True, "limit": 100}),
    ("lock_status", {"name": b"L"}),
    ("election_leader", {"name": b"E"}),
    ("lease_ttl", {"id": 1}),
    ("revision", {}),
]


@pytest.fixture
def proven(chain):
    b = chain.block(ops.lease_grant(ttl=60))
    lease = b.ok()["id"]
    chain.block(*[ops.put(f"k/{i:02d}".encode(), str(i).encode()) for i in range(20)])
    chain.block(ops.lock_acquire(b"L", lease), ops.campaign(b"E", lease, b"me"))
    chain.block(ops.put(b"k/03", b"again"))
    kv = _MemoryKV()
    tree = AuthTree(kv)
    tree.build(1, [(keys.STATE + k, v) for k, v in chain.state.items()])
    kv.write(tree.take_ops(), sync=True)
    tree.landed()
    return chain, partial(tree.prove, 1, reader=kv)


def _record(chain, prove, method, params):
    rec = RecordingReader(lambda lo, hi, limit: prove(lo, hi, limit))
    res = KVApplication().query(rec, method, dict(params), chain.height, block_time(rec))
    return rec, res


@pytest.mark.parametrize("method,params", QUERIES)
def test_a_recorded_query_answers_as_the_plain_state_and_reruns_the_same(proven, method,
                                                                        params):
    chain, prove = proven
    rec, res = _record(chain, prove, method, params)
    assert res == KVApplication().query(chain.state, method, dict(params), chain.height,
                                        chain.time_ms)
    check_ranges(rec.root, rec.ranges)
    reader = ProvenReader(rec.ranges)
    again = KVApplication().query(reader, method, dict(params), chain.height,
                                  block_time(reader))
    assert again == res


@pytest.mark.parametrize("method,params", QUERIES)
def test_a_reader_missing_any_recorded_range_is_incomplete(proven, method, params):
    chain, prove = proven
    rec, res = _record(chain, prove, method, params)
    for i, r in enumerate(rec.ranges):
        others = rec.ranges[:i] + rec.ranges[i + 1:]
        if any(o.lo <= r.lo and (o.end is None or r.end is not None and r.end <= o.end)
               for o in others):
            continue  # read again inside another proven range
        reader = ProvenReader(others)
        with pytest.raises(IncompleteRead):
            KVApplication().query(reader, method, dict(params), chain.height, block_time(reader))


def test_iterations_are_proven_in_growing_pages(proven):
    chain, prove = proven
    rec, res = _record(chain, prove, "kv_range", {"key": b"k/", "limit": 50})
    pages = [r for r in rec.ranges if r.limit is not None]
    assert pages[0].limit == PAGE_FIRST and len(res["kvs"]) == 20
    assert [r.limit for r in pages] == sorted(r.limit for r in pages)


def test_a_tampered_recorded_entry_fails_its_proof(proven):
    chain, prove = proven
    rec, _ = _record(chain, prove, "kv_get", {"key": b"k/03"})
    r = next(r for r in rec.ranges if r.entries and r.entries[0][0].endswith(b"k/03"))
    bad = type(r)(r.lo, r.hi, r.limit, ((r.entries[0][0], b"forged"),), r.proof)
    with pytest.raises(ProofError):
        check_ranges(rec.root, [bad])
