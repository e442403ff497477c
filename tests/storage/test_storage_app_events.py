"""App events stored with their block (keyspace N): written in the block's batch, read back
after reopening, absent for blocks stored without them, pruned with their block."""

from __future__ import annotations

import dataclasses

import pytest
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder, open_engine

from storage import keys, open_store


def _store(engine: str, path):
    return open_engine(engine, path)


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_events_are_kept_with_their_block_survive_reopen_and_go_with_pruning(engine, tmp_path):
    s = _store(engine, tmp_path / "db")
    cb = ChainBuilder(seed=3)
    blocks = [cb.next_block(ntx=2) for _ in range(10)]
    blocks = [dataclasses.replace(b, events=b"ev%d" % b.execute.seq) if i != 4 else b
              for i, b in enumerate(blocks)]
    s.commit_blocks(blocks[:6])
    s.commit_blocks(blocks[6:])
    assert s.app_events(3) == b"ev3"
    assert s.app_events(5) is None  # committed without events
    assert s.app_events(11) is None and s.app_events(0) is None
    if engine == "leveldb":
        s.close()
        s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=False)
        assert s._kv.bodies.get(keys.events(7)) == b"ev7"  # beside the bodies, not in main
    assert [s.app_events(h) for h in (1, 10)] == [b"ev1", b"ev10"]
    assert s.prune_blocks(4) == 4
    assert [s.app_events(h) for h in (1, 2, 3, 4)] == [None, None, None, b"ev4"]
    assert s._kv.get(keys.events(2)) is None  # deleted, not only hidden
    s.close()
