"""Group commit in storage: `commit_blocks([...])` writes several consecutive blocks in ONE
synced batch and leaves exactly the state that committing them one by one leaves; a bad block
anywhere in the group writes nothing; a torn group is detected at recovery."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))

from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder  # noqa: E402

from storage import CorruptionError, LevelDBStore, MemoryStore, StorageError  # noqa: E402


def _blocks(n: int, seed: int = 7) -> list:
    cb = ChainBuilder(seed=seed)
    return [cb.next_block(ntx=1 + i % 4, state_writes=((b"k%d" % (i % 3), b"v%d" % i),
                                                        (b"gone", None)))
            for i in range(n)]


class CountingMemoryStore(MemoryStore):
    """Counts synced writes (the budget is the NUMBER of fsyncs)."""

    def __init__(self) -> None:
        super().__init__(CHAIN_ID, GENESIS_HASH)
        self.synced = 0
        real = self._mem.write

        def write(ops, sync):
            self.synced += bool(sync)
            return real(ops, sync)

        self._mem.write = write


def test_a_group_of_blocks_is_one_synced_write_with_the_same_result_as_one_by_one(tmp_path):
    blocks = _blocks(6)
    one = LevelDBStore(tmp_path / "one", CHAIN_ID, GENESIS_HASH, create=True)
    group = CountingMemoryStore()
    for b in blocks:
        one.commit_block(b)
    before = group.synced
    group.commit_blocks(blocks[:4])
    group.commit_blocks(blocks[4:])
    assert group.synced - before == 2
    assert group.height() == one.height() == 6
    for h in range(1, 7):
        assert group.block(h) == one.block(h)
        for tx in group.block(h).txs:
            assert group.tx_by_client(tx.client_id, tx.request_seq) == one.tx_by_client(
                tx.client_id, tx.request_seq)
    assert dict(group.state().iterate(b"")) == dict(one.state().iterate(b""))
    assert group.recover() == one.recover()  # client windows included
    one.close()


def test_a_bad_block_anywhere_in_the_group_writes_nothing():
    blocks = _blocks(3)
    store = CountingMemoryStore()
    before = store.raw_items()
    broken = [blocks[0], blocks[2]]  # a gap: block 3 after block 1
    with pytest.raises(StorageError, match="block height 3 but the next is 2"):
        store.commit_blocks(broken)
    assert store.raw_items() == before and store.height() == 0
    store.commit_blocks(blocks)
    assert store.height() == 3


def test_the_same_request_twice_in_one_group_is_refused():
    cb = ChainBuilder(seed=3)
    first = cb.next_block(ntx=2)
    from ledger_helpers import make_block, make_pre_prepare

    pp = make_pre_prepare(0, 2, first.execute.time_ms + 1, first.execute.requests[:1])
    again = make_block(pp, first.execute.block_hash)
    store = CountingMemoryStore()
    with pytest.raises(StorageError, match="already committed"):
        store.commit_blocks([first, again])
    assert store.height() == 0


def test_a_torn_group_is_detected_at_recovery():
    blocks = _blocks(3)
    store = CountingMemoryStore()
    store.tear_next_write(keep_ops=len(blocks) * 3)  # meta height + some bodies/txs, no header
    with pytest.raises(StorageError):
        store.commit_blocks(blocks)
    store.crash(lose_unsynced=False)
    with pytest.raises(CorruptionError, match="missing"):
        store.recover()
