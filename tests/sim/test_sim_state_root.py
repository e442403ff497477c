"""The authenticated state tree wired into block execution (SimOptions.authenticated_state, a
node's `authenticated_state`): honest replicas executing the same blocks with the real
KVApplication reach the same state root at every height they all keep."""

from __future__ import annotations

import pytest

from testnet.sim.cluster import SimCluster, SimOptions


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_honest_replicas_agree_on_the_state_root_at_every_height(seed):
    opts = SimOptions(n=4, requests=40, authenticated_state=True)
    cluster = SimCluster(opts, seed)
    res = cluster.run()
    assert res.ok, res.failure_text()
    stores = [node.store for node in cluster.nodes if node.honest]
    top = min(s.height() for s in stores)
    heights = range(max(1, top - 99), top + 1)  # the 100 versions each store keeps
    assert top >= 2
    roots = {h: {s.state_root(h) for s in stores} for h in heights}
    assert all(len(r) == 1 for r in roots.values()), roots
    # the root changes when the state does: blocks with txs change the tx records at least
    with_txs = [h for h in heights if stores[0].block(h).txs]
    assert with_txs
    for h in with_txs:
        assert h - 1 not in roots or roots[h] != roots[h - 1], h


def test_the_tree_is_off_unless_asked():
    cluster = SimCluster(SimOptions(n=4, requests=4), 1)
    assert cluster.run().ok
    assert all(node.store.auth is None for node in cluster.nodes)
