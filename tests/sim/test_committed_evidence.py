"""Committed evidence in the simulator: an equivocating primary is convicted by a transaction
on the agreed log, at the same height on every honest replica, and later view changes skip it.

The simulator checks every honest replica's records as they are persisted: a conviction at
different heights ("conviction-divergence"), a conviction of a replica that is not faulty
("honest-convicted") and entering a view whose primary the replica has convicted
("convicted-primary-installed") are violations.
"""

import pytest

import consensus.replica as replica_module
from consensus import parse_evidence_op
from testnet.sim import Faults, Partition, SimCluster, SimOptions, run_sim


def _isolate_in_turn(*replicas: int, start_ms: int = 4_000, each_ms: int = 3_000) -> Faults:
    """Cut the given replicas off one after the other, so the views cycle past the convicted
    replica's next turn as primary."""
    everyone = frozenset(range(4))
    parts = []
    for k, r in enumerate(replicas):
        t = start_ms + k * each_ms
        parts.append(Partition((frozenset([r]), everyone - {r}), start_ms=t, heal_ms=t + each_ms))
    return Faults(partitions=parts)


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_equivocating_primary_is_convicted_at_one_height_on_every_honest_replica(n, seed):
    opts = SimOptions(n=n, requests=20, byzantine={0: ["equivocate"]})
    res = run_sim(opts, seed)
    assert res.ok, res.failure_text()
    assert res.figures["executed_everywhere"] == opts.requests, res.failure_text()
    assert list(res.figures["convicted"]) == [0], res.figures
    assert res.figures["convicted_on"] == n - 1, res.figures


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_later_view_changes_never_install_the_convicted_primary(seed):
    opts = SimOptions(n=4, requests=40, byzantine={0: ["equivocate"]}, submit_window_ms=16_000,
                      faults=_isolate_in_turn(2, 3, 1, 2))
    res = run_sim(opts, seed)
    assert res.ok, res.failure_text()
    assert res.figures["executed_everywhere"] == opts.requests, res.failure_text()
    assert list(res.figures["convicted"]) == [0]
    # the views went round past 4 (replica 0's turn), which was skipped
    assert res.figures["max_view"] >= 5, res.figures


def test_the_checker_sees_a_convicted_primary_installed_when_nothing_skips(monkeypatch):
    monkeypatch.setattr(replica_module.Replica, "_skip_convicted", lambda self, v: v)
    monkeypatch.setattr(replica_module.Replica, "_primary_skipped", lambda self, v: False)
    opts = SimOptions(n=4, requests=40, byzantine={0: ["equivocate"]}, submit_window_ms=16_000,
                      faults=_isolate_in_turn(2, 3, 1, 2))
    res = run_sim(opts, 1)
    assert res.safety == "violated"
    assert any(v.kind == "convicted-primary-installed" for v in res.violations), res.violations


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", [1, 2])
def test_false_evidence_against_honest_replicas_convicts_nobody(n, seed):
    opts = SimOptions(n=n, requests=20, byzantine={n - 1: ["false-evidence"]},
                      submit_window_ms=6_000)
    cluster = SimCluster(opts, seed)
    res = cluster.run()
    assert res.ok, res.failure_text()  # "honest-convicted" would be a violation
    assert res.figures["executed_everywhere"] == opts.requests, res.failure_text()
    assert res.figures["convicted"] == {}
    liar = cluster.auths[n - 1].signer.public_key
    for node in cluster.live_nodes:  # evidence must prove itself: nothing was recorded
        accused = {
            parse_evidence_op(r.op).accused
            for ex in node.blocks.blocks.values() for r in ex.requests
            if r.client_id == liar and parse_evidence_op(r.op) is not None
        }
        assert accused == set(), accused
        assert node.replica.convicted == {}
