"""The real PBFT replica in the simulator: Byzantine strategies, faults, and the checkers.

Specifications of what a correct cluster guarantees with at most f faulty replicas (safety
always, liveness once the network heals), and of what the checkers must catch beyond that.
Every failure message carries the seed and the replayable trace (`SimResult.failure_text`).
"""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testnet.adversary import STRATEGIES
from testnet.sim import Faults, OneWay, Partition, SimOptions, run_sim
from testnet.sim.scenarios import f_plus_one_options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ok(opts: SimOptions, seed: int):
    res = run_sim(opts, seed)
    assert res.ok, res.failure_text()
    assert res.figures["executed_everywhere"] == opts.requests, res.failure_text()
    return res


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_silent_primary_from_the_start_causes_a_view_change_and_all_requests_commit(n, seed):
    res = _ok(SimOptions(n=n, requests=20, byzantine={0: ["silent"]}), seed)
    assert res.figures["view_changes"] >= 1, res.failure_text()


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equivocating_primary_causes_a_view_change_and_all_requests_commit(n, seed):
    res = _ok(SimOptions(n=n, requests=20, byzantine={0: ["equivocate"]}), seed)
    assert res.figures["view_changes"] >= 1, res.failure_text()


@pytest.mark.parametrize("seed", range(1, 7))
def test_colluding_f_lying_in_view_change_cannot_make_honest_replicas_diverge(seed):
    liars = ["silent-primary", "fake-view-change"]
    evidence = 0
    for opts in (
        SimOptions(n=4, requests=15, byzantine={0: liars}, collude=True),
        SimOptions(n=7, requests=15, byzantine={0: liars, 1: ["fake-view-change"]},
                   collude=True),
        SimOptions(n=7, requests=15, byzantine={0: liars, 1: liars}, collude=True,
                   faults=Faults(loss=0.05, reorder=0.2, heal_ms=4_000)),
    ):
        res = _ok(opts, seed)
        assert res.figures["view_changes"] >= 1, res.failure_text()
        evidence += sum(res.figures["evidence"].values())
    # a lie that arrives after the new view is installed is ignored, not flagged: some are
    assert evidence, f"seed {seed}: the fabricated certificates went unseen"


@pytest.mark.parametrize("n", [4, 7])
def test_f_plus_one_colluding_byzantine_replicas_are_reported_as_a_violation(n):
    for seed in range(1, 6):
        res = run_sim(f_plus_one_options(SimOptions(n=n, requests=10)), seed)
        assert res.safety == "violated", f"seed {seed}: f+1 colluders went unnoticed"
        assert any(v.kind == "divergence" for v in res.violations), res.failure_text()


@pytest.mark.parametrize("bug", ["honest-equivocator", "no-persist"])
def test_planted_bugs_are_reported_as_violations(bug):
    res = run_sim(SimOptions(requests=10, planted_bug=bug), 1)
    assert res.safety == "violated", f"seed 1: planted bug {bug} went unnoticed"


def test_planted_quorum_of_2f_is_caught_by_a_random_fault_sweep():
    from testnet.sim.scenarios import random_options

    for seed in range(1, 200):
        res = run_sim(random_options(SimOptions(requests=20, planted_bug="quorum-2f"), seed),
                      seed)
        if res.safety == "violated":
            return
    pytest.fail("200 seeds with 2f quorums and no violation found")


@pytest.mark.parametrize("kind", ["deaf", "mute"])
@pytest.mark.parametrize("rid", [0, 2])
def test_a_one_way_replica_does_not_force_endless_view_changes(kind, rid):
    for seed in (1, 2):
        opts = SimOptions(n=4, requests=30, submit_window_ms=20_000,
                          faults=Faults(one_way=[OneWay(rid, kind)]))
        res = _ok(opts, seed)
        # the primary may be the broken one once; after that the correct replicas stay put
        assert res.figures["view_changes"] <= 2, res.failure_text()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_strategy_alone_keeps_safety_and_liveness(name):
    spec = "crash-after:25" if name == "crash-after" else name
    for n, rid, seed in ((4, 0, 1), (4, 2, 2), (7, 0, 3)):
        res = _ok(SimOptions(n=n, requests=15, byzantine={rid: [spec]}), seed)
        if name == "forge":
            assert res.options["crypto"] == "ed25519"


def test_twins_cannot_break_safety():
    for seed in range(1, 6):
        res = _ok(SimOptions(n=4, requests=15, twins=[0]), seed)
        # the twins really equivocate (each half of the cluster sees other pre-prepares)
        assert res.figures["faulty_equivocations"] > 0, res.failure_text()
        _ok(SimOptions(n=7, requests=15, twins=[3]), seed)


def test_crash_and_restart_from_records_keeps_safety_and_catches_up():
    for seed in range(1, 6):
        _ok(SimOptions(n=4, requests=30, submit_window_ms=5_000,
                       crashes=[(0, 800, 2_500), (2, 3_000, 4_000)]), seed)


def test_partition_then_heal_recovers():
    p = Partition((frozenset({0, 1}), frozenset({2, 3})), start_ms=0, heal_ms=4_000)
    for seed in range(1, 4):
        _ok(SimOptions(n=4, requests=15, faults=Faults(partitions=[p], heal_ms=4_000)), seed)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 2**32),
    n=st.sampled_from([4, 7]),
    picks=st.lists(st.sampled_from(sorted(set(STRATEGIES) - {"crash-after"})), max_size=2),
    collude=st.booleans(),
    loss=st.sampled_from([0.0, 0.02, 0.1]),
    dup=st.sampled_from([0.0, 0.05]),
    reorder=st.sampled_from([0.0, 0.3]),
    partition=st.booleans(),
    heal_ms=st.integers(1_000, 6_000),
    crash=st.booleans(),
    first=st.integers(0, 6),
)
def test_property_at_most_f_faulty_means_safe_and_eventually_live(
    seed, n, picks, collude, loss, dup, reorder, partition, heal_ms, crash, first
):
    f = (n - 1) // 3
    ids = [(first + k * 2) % n for k in range(f)]  # often the primary of view 0 or 1
    byz = {rid: [s] for rid, s in zip(ids, picks, strict=False)}
    faults = Faults(loss=loss, dup=dup, reorder=reorder, heal_ms=heal_ms)
    if partition:
        faults.partitions.append(Partition((frozenset(range(n // 2)),
                                            frozenset(range(n // 2, n))), 0, heal_ms))
    crashes = [(0, heal_ms // 3, heal_ms // 2)] if crash else []
    opts = SimOptions(n=n, requests=12, byzantine=byz, collude=collude, faults=faults,
                      crashes=crashes)
    _ok(opts, seed)


def _regression_lines():
    path = os.path.join(os.path.dirname(__file__), "regression_seeds.txt")
    with open(path) as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                yield line


@pytest.mark.parametrize("line", list(_regression_lines()))
def test_regression_seeds_always_pass(line):
    from testnet.sim.cli import main

    argv = [*line.split(), "--json"]
    assert main(argv) == 0, f"regression seed failed: python -m testnet sim {' '.join(argv)}"


def test_a_seed_replays_identically_in_another_process_with_another_hash_seed():
    args = [sys.executable, "-m", "testnet.sim.cli", "--seed", "11", "--random-faults",
            "--nodes", "4", "--requests", "15", "--json"]
    outs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        d = json.loads(proc.stdout)
        for k in ("cpu_s", "wall_s"):
            d.pop(k, None)
        outs.append(d)
    assert outs[0] == outs[1], "seed 11 differs between processes: nondeterminism"
