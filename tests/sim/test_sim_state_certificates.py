"""State certificates in the simulator (SimOptions.authenticated_state turns on
consensus Config.state_votes): every replica signs each stored block's roots, 2f+1 equal
votes certify them, honest replicas' roots agree at every height (testnet/sim/roots.py:
"roots-diverge", "false-certificate" and "state-divergence" are violations)."""

from __future__ import annotations

import pytest

from testnet.sim import SimOptions, random_options, run_sim
from testnet.sim.cluster import SimCluster


def _honest_stores(cluster):
    return [nd.store for nd in cluster.nodes if nd.honest and nd.rid not in cluster.faulty]


def test_every_honest_replica_certifies_the_roots_it_stored():
    cluster = SimCluster(SimOptions(n=4, requests=40, authenticated_state=True), 1)
    res = cluster.run()
    assert res.ok, res.failure_text()
    stores = _honest_stores(cluster)
    top = min(s.height() for s in stores)
    assert top >= 3
    for s in stores:
        certified = [h for h in range(1, top + 1) if s.state_certificate(h) is not None]
        assert len(certified) >= top - 1, (s.height(), certified)  # the last may be in flight
        for h in certified:
            cert = s.state_certificate(h)
            assert (cert.state_root, cert.results_root) == s.block_roots(h)
            assert cert.block_hash == s.block(h).hash
            assert len({v.replica for v in cert.votes}) == len(cert.votes) == 3
            assert all(cluster.auths[0].verify(v) for v in cert.votes)
    for h in range(1, top + 1):
        assert len({s.block_roots(h) for s in stores}) == 1, h


def test_a_byzantine_replica_voting_wrong_roots_is_outvoted_without_false_alarms():
    opts = SimOptions(n=4, requests=30, authenticated_state=True, byzantine={2: ["bad-roots"]})
    cluster = SimCluster(opts, 7)
    res = cluster.run()
    assert res.ok, res.failure_text()  # includes: no honest StateDivergence
    assert res.figures["state_certificates"] > 0
    for s in _honest_stores(cluster):
        certs = [s.state_certificate(h) for h in range(1, s.height() + 1)]
        certs = [c for c in certs if c is not None]
        assert len(certs) >= s.height() - 1
        assert all(v.replica != 2 for c in certs for v in c.votes)


def test_a_replica_storing_other_roots_is_caught():
    """Planted fault: replica 1's store reports a wrong state root for every block. The
    checker sees honest roots differ, and replica 1 itself raises the divergence alarm."""
    cluster = SimCluster(SimOptions(n=4, requests=10, authenticated_state=True,
                                    stop_on_violation=False), 3)
    store = cluster.by_rid[1][0].store
    real = store.block_roots
    store.block_roots = lambda h: None if real(h) is None else (b"\x01" * 32, real(h)[1])
    res = cluster.run()
    kinds = {v.kind for v in res.violations}
    assert {"roots-diverge", "state-divergence"} <= kinds, kinds
    assert all(v.replica == 1 for v in res.violations if v.kind == "state-divergence")


@pytest.mark.parametrize("n, seeds", [(4, range(5001, 5041)), (7, range(5101, 5111))])
def test_sweep_roots_agree_under_random_faults(n, seeds):
    failures, certs = [], 0
    for seed in seeds:
        opts = random_options(SimOptions(n=n, requests=20, authenticated_state=True), seed)
        res = run_sim(opts, seed)
        certs += res.figures["state_certificates"]
        if not res.ok:
            failures.append(f"seed {seed}: " + res.failure_text()[:3000])
    assert not failures, "\n\n".join(failures[:3])
    assert certs > 0
