"""Snapshot catch-up in the simulator (real Replicas, MemoryStores with the state tree, the
node's own SnapshotShell): a replica whose disk is wiped while its peers prune their blocks
rejoins by a certified snapshot from one peer, then by block sync, and agrees with them."""

from __future__ import annotations

import pytest

from testnet.sim.cluster import SimCluster, SimOptions


def _opts(**kw) -> SimOptions:
    base = dict(n=4, requests=240, clients=4, submit_window_ms=30_000, authenticated_state=True,
                retain_blocks=8, crashes=[(3, 2_000, 20_000)], wipe_on_restart=[3])
    base.update(kw)
    return SimOptions(**base)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_wiped_replica_rejoins_by_snapshot_while_its_peers_prune(seed):
    cluster = SimCluster(_opts(), seed)
    res = cluster.run()
    assert res.ok, res.failure_text()
    wiped = cluster.by_rid[3][0]
    assert cluster.counts.get("snapshots_installed", 0) >= 1
    assert wiped.store.base_height() > 1  # it never had the early blocks
    peers = [cluster.by_rid[i][0].store for i in range(3)]
    assert all(s.base_height() > 1 for s in peers)  # the peers pruned
    top = min(s.height() for s in peers + [wiped.store])
    assert top > wiped.store.base_height()  # it executed blocks after the snapshot
    assert len({s.state_root(top) for s in peers + [wiped.store]}) == 1
    assert len({s.block(top).hash for s in peers + [wiped.store]}) == 1


def test_without_pruning_the_wiped_replica_replays_every_block():
    cluster = SimCluster(_opts(retain_blocks=0), 1)
    res = cluster.run()
    assert res.ok, res.failure_text()
    assert cluster.counts.get("snapshots_installed", 0) == 0
    assert cluster.by_rid[3][0].store.base_height() == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_a_replica_that_rejoins_by_snapshot_learns_the_convictions_below_it(seed):
    cluster = SimCluster(_opts(byzantine={0: ["equivocate"]}, requests=160), seed)
    res = cluster.run()
    assert res.ok, res.failure_text()
    assert cluster.counts.get("snapshots_installed", 0) >= 1
    wiped = cluster.by_rid[3][0]
    honest = [cluster.by_rid[i][0] for i in (1, 2)]
    convicted = {r: seq for r, (seq, _kind) in honest[0].replica.convicted.items()}
    assert list(convicted) == [0]
    assert convicted[0] < wiped.store.base_height()  # convicted in a block it never executed
    assert {r: seq for r, (seq, _kind) in wiped.replica.convicted.items()} == convicted
    assert [c.replica for c in wiped.store.recover().convicted] == [0]
