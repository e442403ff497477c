"""A client's executed-seqs record (storage.client_seqs, keys G): what it says against a model
of the executed set, its canonical encoding, and the ledger keeping one per client that agrees
with the client index and survives a reopen and a snapshot import."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder

from storage import MemoryStore, keys
from storage.client_seqs import Seqs


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 40), seqs=st.lists(st.integers(1, 120), min_size=1, max_size=60,
                                                 unique=True))
def test_the_record_tells_exactly_the_window_of_the_executed_set(window, seqs):
    rec = Seqs.first(seqs[0], window)
    done = {seqs[0]}
    for s in seqs[1:]:
        rec.add(s)
        done.add(s)
    top = max(done)
    assert rec.top == top
    for q in range(-2, top + 5):
        got = rec.executed(q)
        if q < 1 or q <= top - window:
            assert got is None
        else:
            assert got == (q in done), (q, window)
    back = Seqs.decode(rec.encode())
    assert (back.top, back.window, back.missing) == (rec.top, rec.window, rec.missing)
    assert back.seqs() == tuple(q for q in sorted(done) if q > top - window)
    in_order = Seqs.of(done, window)
    assert in_order is not None and in_order.encode() == rec.encode()  # order-independent


def test_a_client_without_gaps_costs_twelve_bytes():
    rec = Seqs.of(range(1, 5000), 4096)
    assert rec is not None and rec.encode() == keys.u64(4999) + (4096).to_bytes(4, "big")
    assert rec.executed(4999 - 4095) is True and rec.executed(4999 - 4096) is None


@pytest.mark.parametrize("raw", [
    b"", keys.u64(5),  # short
    keys.u64(0) + (4).to_bytes(4, "big"),  # top 0
    keys.u64(5) + (0).to_bytes(4, "big"),  # window 0
    keys.u64(5) + (8).to_bytes(4, "big") + b"\x00\x01",  # not minimal
    keys.u64(5) + (8).to_bytes(4, "big") + b"\x7f",  # bits for seqs below 1
    keys.u64(50) + (4).to_bytes(4, "big") + b"\x08",  # a bit outside the window
    keys.u64(50) + (1 << 24).to_bytes(4, "big"),  # window over the bound
])
def test_malformed_records_are_refused(raw):
    with pytest.raises(ValueError):
        Seqs.decode(raw)


def _records(store) -> dict[bytes, Seqs]:
    return {keys.parse_client_seqs(k): Seqs.decode(v)
            for k, v in store._kv.items(keys.CLIENT_SEQS, keys.prefix_end(keys.CLIENT_SEQS))}


def test_the_ledger_keeps_one_record_per_client_matching_its_executed_seqs():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=6, authenticated_state=True)
    off = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=6)
    cb = ChainBuilder(seed=11)
    for i in range(25):
        b = cb.next_block(ntx=i % 5)
        s.commit_block(b)
        off.commit_block(b)
    recs = _records(s)
    assert set(recs) == set(cb.client_seq)
    for cid, rec in recs.items():
        assert rec.top == cb.client_seq[cid] and rec.window == 6
    # the windows recovery restores: from the records (tree on), from the index (tree off)
    assert s.recover().client_executed == off.recover().client_executed
    # a tree built anew derives the same records from the client index
    before = {c: r.encode() for c, r in recs.items()}
    root = s.state_root()
    s._rebuild_auth()
    assert {c: r.encode() for c, r in _records(s).items()} == before
    assert s.state_root() == root


def test_a_tree_rebuilt_after_a_snapshot_import_keeps_the_imported_records():
    """An imported client's window has no index entries (only its G record travels): a tree
    rebuilt later (a power cut lost the tree's DB, the tree was off for a while) must keep
    those records, not derive them from the empty index."""
    src = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=8, authenticated_state=True)
    cb = ChainBuilder(seed=4)
    for i in range(12):
        src.commit_block(cb.next_block(ntx=1 + i % 3))
    h = src.height()
    items = [kv for p in keys.AUTH_KEYSPACES for kv in src._kv.items(p, keys.prefix_end(p))]
    dst = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=8, authenticated_state=True)
    dst.begin_import(h)
    dst.import_page(tuple(items))
    blk = src.block(h)
    dst.finish_import(h, blk.hash, src.committed_block(h), blk.prev_hash, src.state_root())
    before = {c: r.encode() for c, r in _records(dst).items()}
    assert before == {c: r.encode() for c, r in _records(src).items()}
    dst._rebuild_auth()
    assert {c: r.encode() for c, r in _records(dst).items()} == before
    assert dst.state_root() == src.state_root()
    assert dst.recover().client_executed == src.recover().client_executed
