"""Block pruning (`retain_blocks`) and certified snapshot pages: serve, verify, import, on
real plyvel (tmp dirs) and on MemoryStore."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder

from storage import CorruptionError, MemoryStore, ProofError, StorageError, keys, open_store
from storage.ledger_prune import prune_below
from storage.snapshot import verify_page


def _store(engine: str, path, auth: bool = True, versions: int = 100):
    if engine == "leveldb":
        return open_store(path, CHAIN_ID, GENESIS_HASH, create=True, authenticated_state=auth,
                          state_versions=versions)
    return MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=auth,
                       state_versions=versions)


def _blocks(n: int, ntx: int = 3, seed: int = 5):
    cb = ChainBuilder(seed=seed)
    out = []
    for i in range(n):
        writes = tuple((b"k/%d" % ((i * 7 + j) % 50), b"v%d" % i) for j in range(3))
        out.append(cb.next_block(ntx=ntx, state_writes=writes))
    return out


def _pages(store, height, max_items=7, max_bytes=10_000):
    held = store.open_snapshot()
    try:
        after, pages = b"", []
        while True:
            page = store.snapshot_page(held, height, after, max_items, max_bytes)
            pages.append(page)
            nxt = verify_page(store.state_root(height), after, page.items, page.proof,
                              page.more)
            if nxt is None:
                return pages
            after = nxt
    finally:
        held.close()


def _covered(store) -> dict:
    return {k: v for p in keys.AUTH_KEYSPACES for k, v in store._kv.items(p, keys.prefix_end(p))}


# ------------------------------------------------------------------ pruning


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
@pytest.mark.parametrize("auth", [False, True])
def test_pruning_deletes_old_blocks_in_bounded_steps_and_survives_reopen(engine, auth,
                                                                         tmp_path):
    s = _store(engine, tmp_path / "db", auth)
    blocks = _blocks(40)
    s.commit_blocks(blocks)
    assert s.base_height() == 1
    old_tx = blocks[2].results[0]
    assert s.prune_blocks(30, max_blocks=10) == 11  # one bounded step
    assert s.base_height() == 11 and s.block(10) is None and s.block(11) is not None
    while s.base_height() < 30:
        s.prune_blocks(30, max_blocks=10)
    assert s.base_height() == 30
    assert [b.height for b in s.blocks(1)] == list(range(30, 41))
    # tx records go with their block (they are not in the state tree either way)
    assert s.tx(old_tx.tx_hash) is None
    assert s.tx(blocks[-1].results[0].tx_hash) is not None
    assert s.prune_blocks(10_000) == 40  # never the last block
    if engine == "leveldb":
        s.close()
        s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, False, authenticated_state=auth)
    rs = s.recover()
    assert rs.last_executed == 40 and s.base_height() == 40
    assert s.verify_chain() == 40
    s.close()


def test_pruning_keeps_each_clients_dedup_window():
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, dedup_window=4)
    s.commit_blocks(_blocks(30, ntx=2))
    before = s.recover().client_executed
    s.prune_blocks(30)
    assert s.recover().client_executed == before
    kept = [k for k, _ in s._kv.items(keys.CLIENT_INDEX, keys.prefix_end(keys.CLIENT_INDEX))]
    last = {(r.client_id, r.request_seq) for r in s.block(30).txs}
    windows = {(c, q) for c, seqs in before.items() for q in seqs}
    assert {(k[2:2 + k[1]], keys.from_u64(k[-8:])) for k in kept} == windows | last


def test_prune_below_keeps_retained_blocks_and_the_served_snapshot():
    assert prune_below(5000, 0, 4000) == 0  # retain_blocks 0: keep all
    assert prune_below(5000, 1000, 4990) == 4001
    assert prune_below(5000, 1000, 3000) == 3000  # never past the snapshot we serve
    assert prune_below(500, 1000, 480) == 0


# ------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_snapshot_pages_cover_the_tree_and_import_gives_the_same_ledger(engine, tmp_path):
    src = _store(engine, tmp_path / "src")
    blocks = _blocks(30)
    src.commit_blocks(blocks[:20])
    held = src.open_snapshot()
    src.commit_blocks(blocks[20:])  # the held snapshot still serves height 20
    root20 = src.state_root(20)
    after, items = b"", []
    while True:
        page = src.snapshot_page(held, 20, after, 9, 400)
        assert len(page.items) <= 9
        assert sum(len(k) + len(v) for k, v in page.items) <= 400 or len(page.items) == 1
        items += page.items
        dst_next = verify_page(root20, after, page.items, page.proof, page.more)
        if dst_next is None:
            break
        after = dst_next
    held.close()
    dst = _store(engine, tmp_path / "dst")
    dst.begin_import(20)
    for i in range(0, len(items), 9):
        dst.import_page(tuple(items[i:i + 9]))
    b20 = blocks[19].execute
    dst.finish_import(20, b20.block_hash, src.committed_block(20), b20.prev_hash, root20)
    assert dst.height() == 20 and dst.state_root() == root20
    assert dst.base_height() == 20
    for b in blocks[20:]:  # replays only the blocks after the snapshot
        dst.commit_block(b)
    assert dst.state_root() == src.state_root() and _covered(dst) == _covered(src)
    rs = dst.recover()
    assert rs.last_executed == 30 and rs.client_executed == src.recover().client_executed
    src.close()
    dst.close()


def test_an_import_whose_root_differs_is_refused_and_recovery_refuses_to_run():
    src = _store("memory", None)
    blocks = _blocks(10)
    src.commit_blocks(blocks)
    items = [it for p in _pages(src, 10) for it in p.items]
    dst = _store("memory", None)
    dst.begin_import(10)
    dst.import_page(tuple(items[:-1]))  # one entry short of the certified state
    b = blocks[-1].execute
    with pytest.raises(CorruptionError, match="not the certified"):
        dst.finish_import(10, b.block_hash, src.committed_block(10), b.prev_hash,
                          src.state_root(10))
    with pytest.raises(CorruptionError, match="interrupted"):
        dst.recover()


def test_imports_are_refused_without_the_tree_or_at_or_below_our_height():
    s = _store("memory", None, auth=False)
    with pytest.raises(StorageError, match="state tree"):
        s.begin_import(5)
    t = _store("memory", None)
    t.commit_blocks(_blocks(5))
    with pytest.raises(StorageError, match="not above"):
        t.begin_import(5)
    with pytest.raises(StorageError, match="outside"):
        t.import_page(((b"Q" + bytes(16), b"x"),))


_SRC = None


def _source():
    global _SRC
    if _SRC is None:
        s = _store("memory", None)
        s.commit_blocks(_blocks(12))
        _SRC = (s, _pages(s, 12, max_items=6))
    return _SRC


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_a_page_with_a_dropped_altered_or_extra_entry_is_refused(data):
    s, pages = _source()
    root = s.state_root(12)
    i = data.draw(st.integers(0, len(pages) - 1))
    page = pages[i]
    items = list(page.items)
    how = data.draw(st.sampled_from(["drop", "alter", "extra", "swap", "last", "root"]))
    more = page.more
    if how == "drop":  # (dropping a page's LAST entry with more=True only ends it earlier:
        # the next page starts there, nothing is lost, and the proof still holds)
        last = len(items) - (2 if more else 1)
        if last < 0:
            return
        del items[data.draw(st.integers(0, last))]
    elif how == "alter":
        j = data.draw(st.integers(0, len(items) - 1))
        k, v = items[j]
        items[j] = (k, v + b"!")
    elif how == "extra":
        k = items[data.draw(st.integers(0, len(items) - 1))][0] + b"\x01"
        items.append((k, b"x"))
        items.sort()
    elif how == "swap":
        if len(items) < 2:
            items = items + items
        items[0], items[1] = items[1], items[0]
    elif how == "last":  # a page passed off as the last one
        if not more:
            return
        more = False
    else:
        root = bytes(32)
    with pytest.raises(ProofError):
        verify_page(root, page.after_key, items, page.proof, more)
