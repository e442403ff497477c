"""The block-hash index (keyspace B): each stored block's hash -> height, written in the
block's own batch, deleted when the block is pruned, and built at recovery for a ledger written
before it. On real plyvel and on MemoryStore."""

from __future__ import annotations

import pytest
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder, open_engine

from storage import keys, open_store


def _store(engine: str, path):
    return open_engine(engine, path)


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_every_stored_block_is_found_by_its_hash_until_pruned(engine, tmp_path):
    s = _store(engine, tmp_path / "db")
    cb = ChainBuilder(seed=5)
    blocks = [cb.next_block(ntx=2) for _ in range(12)]
    s.commit_blocks(blocks[:5])
    for b in blocks[5:]:
        s.commit_block(b)
    for b in blocks:
        assert s.block_height(b.execute.block_hash) == b.execute.seq
        assert s.block(b.execute.seq).hash == b.execute.block_hash
    assert s.block_height(b"\x07" * 32) is None
    with s.read_view() as view:
        assert view.block_height(blocks[3].execute.block_hash) == 4
    assert s.prune_blocks(6) == 6
    for b in blocks:
        want = None if b.execute.seq < 6 else b.execute.seq
        assert s.block_height(b.execute.block_hash) == want, b.execute.seq
    assert s._kv.get(keys.block_hash(blocks[0].execute.block_hash)) is None  # deleted
    s.close()


def test_a_ledger_written_before_the_index_gets_it_at_recovery(tmp_path):
    s = _store("leveldb", tmp_path / "db")
    cb = ChainBuilder(seed=6)
    blocks = [cb.next_block(ntx=1) for _ in range(7)]
    s.commit_blocks(blocks)
    s.recover()
    # as an older version left it: no B keys, no done mark
    old = [(k, None) for k, _ in s._kv.items(keys.BLOCK_HASH, keys.prefix_end(keys.BLOCK_HASH))]
    assert len(old) == 7
    s._kv.write(old + [(keys.META_BLOCK_INDEX, None)], sync=True)
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
    assert s.block_height(blocks[2].execute.block_hash) is None
    s.recover()
    assert [s.block_height(b.execute.block_hash) for b in blocks] == list(range(1, 8))
    assert s._kv.get(keys.META_BLOCK_INDEX) is not None
    s.close()
