"""The client index holds a window per client, not a key per tx (state tree on): entries at or
below a client's highest executed seq minus dedup_window are deleted in the block that moves
the window, the client's floor (F) records how far, and the tree covers exactly what the KV
holds. On real plyvel and on MemoryStore."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import (
    CHAIN_ID,
    CLIENTS,
    GENESIS_HASH,
    ChainBuilder,
    make_block,
    make_pre_prepare,
)

from consensus import Request, sign_request
from storage import MemoryStore, keys, open_store

WINDOW = 8


def _store(engine: str, path, auth: bool = True):
    if engine == "leveldb":
        return open_store(path, CHAIN_ID, GENESIS_HASH, create=True, authenticated_state=auth,
                          dedup_window=WINDOW)
    return MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=auth, dedup_window=WINDOW)


def _entries(store, cid: bytes) -> list[int]:
    lo = keys.client_index(cid, 0)
    return [keys.from_u64(k[-8:]) for k, _ in store._kv.items(lo, keys.prefix_end(lo[:-8]))]


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_entries_below_the_window_are_deleted_and_the_floor_recorded(engine, tmp_path):
    s = _store(engine, tmp_path / "db")
    cb = ChainBuilder(seed=3)
    blocks = [cb.next_block(ntx=3) for _ in range(20)]  # 60 txs over 3 clients: 20 each
    s.commit_blocks(blocks[:7])
    for b in blocks[7:]:
        s.commit_block(b)  # one batch per block and groups of several: the same rule
    for c in CLIENTS:
        cid = c.public_key
        top = cb.client_seq[cid]
        assert _entries(s, cid) == list(range(top - WINDOW + 1, top + 1))
        assert s.client_floor(cid) == top - WINDOW
        assert s.tx_by_client(cid, top - WINDOW) is None  # gone: below the window
        assert s.tx_by_client(cid, top - WINDOW + 1) is not None
    # the tree covers what the KV holds: a tree rebuilt from the KV alone has the same root
    root = s.state_root(20)
    s._rebuild_auth()
    assert s.auth.root_hash(20) == root


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_a_group_commit_and_block_by_block_give_the_same_roots(engine, tmp_path):
    cb = ChainBuilder(seed=9)
    blocks = [cb.next_block(ntx=4) for _ in range(12)]
    a = _store(engine, tmp_path / "a")
    b = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True, dedup_window=WINDOW)
    a.commit_blocks(blocks)
    for blk in blocks:
        b.commit_block(blk)
    assert [a.state_root(h) for h in (6, 12)] == [b.state_root(h) for h in (6, 12)]
    assert {c.public_key: a.client_floor(c.public_key) for c in CLIENTS} == \
        {c.public_key: b.client_floor(c.public_key) for c in CLIENTS}


def test_with_the_tree_off_nothing_is_deleted_at_commit(tmp_path):
    s = _store("memory", tmp_path, auth=False)
    cb = ChainBuilder(seed=3)
    s.commit_blocks([cb.next_block(ntx=3) for _ in range(10)])
    cid = CLIENTS[0].public_key
    assert _entries(s, cid) == list(range(1, cb.client_seq[cid] + 1))
    assert s.client_floor(cid) == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(1, 5))
def test_any_grouping_keeps_exactly_the_window(sizes, group):
    cb = ChainBuilder(seed=len(sizes))
    blocks = [cb.next_block(ntx=n) for n in sizes]
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True, dedup_window=WINDOW)
    for i in range(0, len(blocks), group):
        s.commit_blocks(blocks[i:i + group])
    for c in CLIENTS:
        top = cb.client_seq.get(c.public_key, 0)
        assert _entries(s, c.public_key) == list(range(max(1, top - WINDOW + 1), top + 1))


def test_a_last_block_that_moves_its_own_clients_window_recovers(tmp_path):
    """A block holding seqs of one client more than dedup_window apart deletes the lower
    one's entry in the same batch; recovery's check of the last block accepts that (the seq
    is at or below the floor), after a reopen and in a full verify_chain."""
    s = _store("leveldb", tmp_path / "db")
    cb = ChainBuilder(seed=4)
    s.commit_blocks([cb.next_block(ntx=2) for _ in range(3)])
    c = CLIENTS[0]
    low = cb.client_seq.get(c.public_key, 0) + 1
    reqs = tuple(sign_request(CHAIN_ID, c, Request(b"", seq, b"put k v"))
                 for seq in (low, low + 2 * WINDOW))
    last = make_block(make_pre_prepare(0, cb.height + 1, cb.time_ms + 5, reqs), cb.prev_hash)
    s.commit_block(last)
    assert s.client_floor(c.public_key) == low + WINDOW
    assert s.tx_by_client(c.public_key, low) is None  # deleted with its own block
    assert s.tx(last.results[0].tx_hash) is not None  # its record stays (by hash)
    root = s.state_root(4)
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, False, authenticated_state=True,
                   dedup_window=WINDOW)
    assert s.height() == 4 and s.state_root(4) == root
    assert s.verify_chain() == 4
    s.close()
