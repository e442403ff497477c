"""MemoryStore under whole-cluster simulation: real consensus.Replicas in testnet's simulator,
each node's disk backed by a MemoryStore, with crashes and restarts.

Every persist and every executed block goes through the store; on restart the replica is rebuilt
from `MemoryStore.recover()` after `crash(lose_unsynced=True)`, and that state is compared with
the simulator's own reference (`testnet.sim.stores.recovered_state`). Runs must stay safe and
live, and both recoveries must agree.
"""

from __future__ import annotations

import pytest

from consensus import NewView, ViewChange, request_digest
from storage import BlockCommit, MemoryStore, TxResult
from testnet.sim import cluster as sim_cluster
from testnet.sim.stores import SimBlocks, SimRecords, recovered_state

COMPARED: list[int] = []


class StoreRecords(SimRecords):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__()
        self.store = store

    def apply(self, records) -> None:
        self.store.persist(list(records))  # raises on anything the store refuses
        super().apply(records)


class StoreBlocks(SimBlocks):
    def __init__(self, dedup_window: int, store: MemoryStore) -> None:
        super().__init__(dedup_window)
        self.store = store

    def append(self, ex) -> None:
        results = tuple(
            TxResult(request_digest(r), r.client_id, r.request_seq, ex.seq, i, 0, b"ok")
            for i, r in enumerate(ex.requests)
        )
        writes = tuple((r.op.split()[1], r.op.split()[2]) for r in ex.requests)
        self.store.commit_block(BlockCommit(ex, results, writes))
        super().append(ex)

    def serve(self, from_seq: int, to_seq: int, limit: int = 64):
        """Answer block fetches from the store (what a node's shell does)."""
        out = []
        for h in range(max(1, from_seq), min(to_seq, from_seq + limit - 1) + 1):
            cb = self.store.committed_block(h)
            if cb is None or not cb.commits:
                break
            out.append(cb)
        expected = super().serve(from_seq, to_seq, limit)
        assert tuple(out) == expected
        return tuple(out)


class StoreNode(sim_cluster.SimNode):
    def __init__(self, slot, rid, honest, strategies, auth, dedup_window, offset_ms) -> None:
        super().__init__(slot, rid, honest, strategies, auth, dedup_window, offset_ms)
        # not `self.store`: the simulator's own store="memory" mode would write a second time
        mem = MemoryStore(b"sim", bytes(32), dedup_window=dedup_window, name=f"r{rid}")
        self.records = StoreRecords(mem)
        self.blocks = StoreBlocks(dedup_window, mem)


def _recover_from_store(records: StoreRecords, blocks: StoreBlocks, max_clients=None):
    store = records.store
    store.crash(lose_unsynced=True)  # the process died: only synced batches survive
    mine = store.recover(max_clients=max_clients)
    ref = recovered_state(records, blocks, max_clients)
    assert (mine.view, mine.in_view_change, mine.stable_checkpoint) == (
        ref.view, ref.in_view_change, ref.stable_checkpoint)
    assert (mine.last_executed, mine.last_block_hash, mine.last_time_ms) == (
        ref.last_executed, ref.last_block_hash, ref.last_time_ms)
    assert mine.client_executed == ref.client_executed or (
        # capped: the two may restore different clients, each a correct window
        mine.clients_complete is ref.clients_complete is False
        and len(mine.client_executed) == len(ref.client_executed)
        and all(blocks._window(c) == w for c, w in mine.client_executed.items())
    )
    # same votes, except that the store drops stale VIEW-CHANGE/NEW-VIEW only at a Prune
    extra = set(mine.own_votes) - set(ref.own_votes)
    assert set(ref.own_votes) <= set(mine.own_votes)
    assert all(isinstance(v, ViewChange | NewView) for v in extra)
    COMPARED.append(mine.last_executed)
    return mine


@pytest.mark.parametrize("seed", range(6))
def test_cluster_on_memory_stores_survives_crashes_and_restarts(seed, monkeypatch):
    monkeypatch.setattr(sim_cluster, "SimNode", StoreNode)
    monkeypatch.setattr(sim_cluster, "recovered_state", _recover_from_store)
    COMPARED.clear()
    opts = sim_cluster.SimOptions(
        requests=60,
        crashes=[(seed % 4, 400 + 100 * seed, 2_500), ((seed + 1) % 4, 3_000, 5_000)],
    )
    result = sim_cluster.SimCluster(opts, seed).run()
    assert result.ok, result.failure_text()
    assert len(COMPARED) == 2  # both restarts recovered from the store
    assert min(result.committed.values()) > 0
    print("committed", result.committed, "recovered at", COMPARED)
