"""MemoryStore under whole-cluster simulation: real consensus.Replicas in testnet's simulator,
each node's disk a MemoryStore, with crashes and restarts.

Every persist and every executed block goes through the store (the node's own shell code,
bftnode.node.driver.apply_output); on restart the replica is rebuilt from
`MemoryStore.recover()` after `crash(lose_unsynced=True)`, and that state is compared with the
simulator's reference model (`testnet.sim.stores.recovered_state` over what the checkers saw
persisted and executed). Runs must stay safe and live, and both recoveries must agree.
"""

from __future__ import annotations

import pytest

from consensus import NewView, ViewChange
from testnet.sim import cluster as sim_cluster
from testnet.sim.stores import recovered_state

COMPARED: list[int] = []
_STORE_RECOVER = sim_cluster.SimCluster._recover


def _recover_from_store(cluster, node):
    # store="memory": the process died, only synced batches survive
    mine = _STORE_RECOVER(cluster, node)
    max_clients = cluster.config.max_clients
    records, blocks = node.records, node.blocks
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
    monkeypatch.setattr(sim_cluster.SimCluster, "_recover", _recover_from_store)
    COMPARED.clear()
    opts = sim_cluster.SimOptions(
        requests=60, store="memory",
        crashes=[(seed % 4, 400 + 100 * seed, 2_500), ((seed + 1) % 4, 3_000, 5_000)],
    )
    result = sim_cluster.SimCluster(opts, seed).run()
    assert result.ok, result.failure_text()
    assert len(COMPARED) == 2  # both restarts recovered from the store
    assert min(result.committed.values()) > 0
    print("committed", result.committed, "recovered at", COMPARED)
