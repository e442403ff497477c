"""The simulator itself: scheduling, fault knobs, crash/restart, determinism and checkers.

These run the tiny normal-case `ToyReplica` so they test the simulator, not PBFT; the real
replica is exercised in test_sim_replica.py. Every assertion message names the seed.
"""

import dataclasses
import random

import pytest

from testnet.adversary import STRATEGIES, DetRng, parse_byzantine, parse_strategy
from testnet.checkers import EquivocationMonitor, find_gaps
from testnet.sim import Faults, OneWay, Partition, SimCluster, SimNetwork, SimOptions, run_sim
from testnet.sim.scenarios import f_plus_one_options, random_options

from .toy_replica import ToyReplica


def _run(seed=1, **kw):
    return run_sim(SimOptions(**kw), seed, ToyReplica)


def test_fault_free_run_executes_every_request_on_every_replica():
    res = _run(requests=30)
    assert res.ok, res.failure_text()
    assert res.figures["executed_everywhere"] == 30, res.failure_text()
    assert len(set(res.committed.values())) == 1, res.failure_text()


def test_a_seed_replays_exactly():
    opts = dict(requests=15, faults=Faults(dup=0.1, reorder=0.3, heal_ms=3000))
    a, b = _run(7, **opts), _run(7, **opts)
    da, db = a.as_dict(with_trace=True), b.as_dict(with_trace=True)
    da.pop("cpu_s"), db.pop("cpu_s")
    assert da == db, "seed 7 did not replay identically"
    assert a.ok, a.failure_text()
    c = _run(8, **opts).as_dict(with_trace=True)
    assert (c["trace"], c["delivered"]) != (da["trace"], da["delivered"]), "seeds 7, 8 alike"


def test_planted_honest_equivocator_is_reported_with_its_seed():
    res = _run(3, planted_bug="honest-equivocator")
    assert res.safety == "violated"
    kinds = {v.kind for v in res.violations}
    assert "honest-equivocation" in kinds, res.failure_text()
    text = res.failure_text()
    assert text.startswith("seed 3:") and "last" in text and "submit" in text


def test_planted_missing_persist_is_reported():
    res = _run(4, planted_bug="no-persist")
    assert res.safety == "violated"
    assert res.violations[0].kind == "sent-before-persist", res.failure_text()


def test_f_plus_one_colluding_equivocators_make_the_agreement_checker_fire():
    for seed in range(1, 6):
        res = run_sim(f_plus_one_options(SimOptions(requests=10)), seed, ToyReplica)
        assert res.safety == "violated", f"seed {seed}: f+1 colluders went unnoticed"
        assert any(v.kind == "divergence" for v in res.violations), res.failure_text()


def test_loss_before_heal_drops_and_after_heal_delivers():
    net = SimNetwork(Faults(loss=1.0, heal_ms=100), random.Random(1))
    assert net.route(0, 1, 50) == [] and net.dropped == {"loss": 1}
    assert len(net.route(0, 1, 100)) == 1


def test_duplication_and_delay_bounds():
    net = SimNetwork(Faults(dup=1.0, delay_min_ms=5, delay_max_ms=9, heal_ms=10),
                     random.Random(2))
    times = net.route(0, 1, 0)
    assert len(times) == 2 and all(5 <= t <= 9 for t in times)


def test_partition_blocks_across_groups_until_heal():
    p = Partition((frozenset({0, 1}), frozenset({2, 3})), start_ms=10, heal_ms=20)
    net = SimNetwork(Faults(partitions=[p]), random.Random(3))
    assert net.route(0, 2, 5) and not net.route(0, 2, 15) and net.route(0, 1, 15)
    assert net.route(3, 1, 20)


def test_one_way_faults_are_directional():
    net = SimNetwork(Faults(one_way=[OneWay(1, "deaf"), OneWay(2, "mute")]), random.Random(4))
    assert net.route(1, 0, 0) and not net.route(0, 1, 0)
    assert net.route(0, 2, 0) and not net.route(2, 0, 0)


def test_crashed_replica_restarts_from_what_it_persisted_and_executed():
    restored = {}

    def factory(config, rid, auth, state):
        if state is not None:
            restored[rid] = state
        return ToyReplica(config, rid, auth, state)

    cluster = SimCluster(SimOptions(requests=30, submit_window_ms=4000,
                                    crashes=[(2, 1500, 2500)]), 5, factory)
    res = cluster.run()
    state = restored[2]
    before = [ex for ex in cluster.by_rid[2][0].blocks.blocks.values()
              if ex.seq <= state.last_executed]
    assert state.last_executed > 0, f"seed 5: nothing executed before the crash {state}"
    assert state.last_block_hash == before[-1].block_hash
    assert state.own_votes, "seed 5: no votes were restored"
    assert sum(len(v) for v in state.client_executed.values()) == sum(
        len(ex.requests) for ex in before)
    # the toy cannot catch up, but the other three keep going and nothing diverges
    assert res.safety == "ok", res.failure_text()
    assert res.committed[0] == res.committed[1] == res.committed[3] > state.last_executed


def test_flood_garbage_is_dropped_and_counted_and_safety_holds():
    res = _run(6, requests=10, byzantine={3: ["flood"]})
    assert res.safety == "ok", res.failure_text()
    assert res.figures["undecodable"] > 0, "seed 6: no undecodable frame was sent"


def test_deadline_without_progress_reports_stalled():
    # the toy has no view change: a silent primary must show up as a liveness stall
    res = _run(9, requests=5, byzantine={0: ["silent"]}, liveness_bound_ms=5_000)
    assert res.safety == "ok" and res.liveness == "stalled", res.failure_text()


def test_twins_share_one_id_and_key():
    cluster = SimCluster(SimOptions(requests=5, twins=[1]), 1, ToyReplica)
    twins = cluster.by_rid[1]
    assert len(twins) == 2 and twins[0].auth is twins[1].auth
    assert twins[0].links and twins[1].links and not twins[0].links & twins[1].links
    assert cluster.run().safety == "ok"


def test_random_options_respect_the_fault_budget_and_are_seed_stable():
    for seed in range(200):
        for n in (4, 7):
            o = random_options(SimOptions(n=n), seed)
            assert len(o.faulty_ids()) <= (n - 1) // 3, f"seed {seed}: {o}"
            assert o == random_options(SimOptions(n=n), seed)
    assert any(random_options(SimOptions(), s).crypto == "ed25519" for s in range(16))


def test_random_options_draw_relay_and_pipeline_apart_from_the_rest_of_the_mix():
    drawn_values = set()
    for seed in range(40):
        drawn = random_options(SimOptions(), seed)
        drawn_values.add((drawn.forward_relay_ms, drawn.max_in_flight))
        fixed = random_options(SimOptions(forward_relay_ms=0, max_in_flight=4), seed)
        assert (fixed.forward_relay_ms, fixed.max_in_flight) == (0, 4)  # explicit flags win
        # the rest of the mix is unchanged
        assert dataclasses.replace(drawn, forward_relay_ms=0, max_in_flight=4) == fixed
        cfg = drawn.config()
        assert (cfg.forward_relay_ms, cfg.max_in_flight) == (drawn.forward_relay_ms,
                                                             drawn.max_in_flight)
    assert drawn_values == {(0, 1), (0, 4), (500, 1), (500, 4)}


def test_strategy_registry_has_the_contract_names_and_parses_parameters():
    for name in ("silent", "equivocate", "forge", "replay", "slow", "fake-view-change",
                 "bad-checkpoint", "flood"):
        assert name in STRATEGIES
    assert parse_strategy("crash-after:3").k == 3
    assert parse_byzantine(["1:silent,2:forge", "1:replay"], 4) == {
        1: ["silent", "replay"], 2: ["forge"]}
    for bad in (["x:silent"], ["1:nope"], ["9:silent"], ["1"], ["1:silent:3"]):
        with pytest.raises(ValueError):
            parse_byzantine(bad, 4)


def test_det_rng_is_a_pure_function_of_its_seed():
    a, b = DetRng(5), DetRng(5)
    assert [a.randrange(100) for _ in range(20)] == [b.randrange(100) for _ in range(20)]
    assert DetRng(6).bytes(8) != DetRng(5).bytes(8)


def test_incremental_checkers_agree_with_the_batch_ones():
    from consensus import Prepare

    m = EquivocationMonitor()
    assert m.add(Prepare(0, 1, b"a" * 32, 2)) is None
    assert m.add(Prepare(0, 1, b"a" * 32, 2)) is None
    assert m.add(Prepare(0, 1, b"b" * 32, 2)) is not None
    assert find_gaps([1, 2, 3]) == [] and find_gaps([1, 3]) == [3]


def test_bench_sim_orders_every_request_and_reports_cpu_throughput():
    from testnet.sim.bench import bench_one

    r = bench_one(nodes=4, batch=100, requests=400, clients=8, crypto="fast")
    assert r["executed"] == 400 and r["safety"] == "ok", r
    assert r["req_per_cpu_s"] > 0 and r["avg_batch"] > 1, r
