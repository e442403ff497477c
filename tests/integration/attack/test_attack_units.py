"""The attack runner's pure parts, without a testnet: manifest parsing (clear errors), the
shipped library covers every strategy and fault the threat model names, and the agreement /
evidence / fault-timing checkers flag what they must."""

from __future__ import annotations

import threading
from collections import Counter
from types import SimpleNamespace

import pytest

from testnet.adversary import STRATEGIES
from testnet.attack import (
    VIOLATED,
    Fault,
    ScenarioError,
    check_agreement,
    judge_convictions,
    judge_evidence,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
    time_faults,
)


def chain(hashes: list[str]) -> dict[int, dict]:
    out, prev = {}, "00"
    for h, x in enumerate(hashes, 1):
        out[h] = {"hash": x, "prev_hash": prev, "time": 1000 * h, "view": 0}
        prev = x
    return out


# issue 36: heavy legal load, bounded by their own manifest checks (test_heavy_load.py)
HEAVY_LOAD = {"relay-flood", "burst-kill-primary"}


def test_every_shipped_scenario_parses_and_is_short():
    names = shipped_scenarios()
    assert len(names) >= 15
    for name in names:
        sc = load_scenario(name)
        assert sc.description, name
        assert len(sc.byzantine) <= sc.f, f"{name}: more byzantine nodes than f"
        assert sc.load.duration_s <= 20 and sc.load.txs <= 100 or name in HEAVY_LOAD, name


def test_library_covers_the_required_attacks():
    strategies = set()
    actions = set()
    sizes = set()
    for name in shipped_scenarios():
        sc = load_scenario(name)
        sizes.add(sc.nodes)
        for specs in sc.byzantine.values():
            strategies |= {s.split(":")[0] for s in specs}
        actions |= {p.action for p in sc.perturbations}
    required = {"silent", "equivocate", "forge", "replay", "future-view", "slow",
                "fake-view-change", "bad-checkpoint", "flood"}
    assert required <= strategies <= set(STRATEGIES)
    assert {"kill-hard", "kill", "pause", "restart", "wipe-restart"} <= actions
    assert 7 in sizes
    collude = load_scenario("collude-7")
    assert len(collude.byzantine) == 2 == collude.f
    storm = load_scenario("view-change-storm")
    assert sum(p.node == "primary" for p in storm.perturbations) >= 4


@pytest.mark.parametrize("text, message", [
    ("nodes = 3", "'nodes' must be an integer >= 4"),
    ("[byzantine]\n9 = ['silent']", "node index 0..3"),
    ("[byzantine]\n1 = ['nonsense']", "unknown byzantine strategy"),
    ("[[perturbation]]\nat_s = 1\naction = 'explode'", "action 'explode' not one of"),
    ("[[perturbation]]\nat_s = 1\naction = 'kill'\nnode = 'leader'", "node 'leader'"),
    ("[load]\ntxs = 'many'", "field 'txs' must be int"),
    ("[load]\nwarp = 1", "unknown field(s) ['warp']"),
    ("nodes = ", "not valid TOML"),
])
def test_bad_manifests_are_rejected_with_the_reason(text, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "bad.toml")
    assert message in str(err.value) and "bad.toml" in str(err.value)


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="kill-primary"):
        load_scenario("no-such-scenario")


def test_agreement_check_flags_a_diverging_block_and_a_broken_link():
    a = chain(["a1", "a2", "a3"])
    assert check_agreement({0: a, 1: chain(["a1", "a2", "a3"])}, 3).result == "ok"
    div = check_agreement({0: a, 1: chain(["a1", "b2", "b3"])}, 3)
    assert div.result == VIOLATED and "height 2" in div.detail
    broken = chain(["a1", "a2", "a3"])
    broken[3] = {**broken[3], "prev_hash": "zz"}
    assert check_agreement({0: a, 1: broken}, 3).result == VIOLATED
    short = chain(["a1"])
    assert check_agreement({0: a, 1: short}, 3).result == VIOLATED


def test_fault_timing_ignores_blocks_proposed_before_the_fault():
    # block 2 was proposed before the fault (in flight) and is seen right after it: it does
    # not count; block 3, proposed after the fault, is the next commit
    run = SimpleNamespace(
        t0_wall_ms=0.0, honest=[1, 2], lock=threading.Lock(),
        heights={1: [(0.5, 1), (2.05, 2), (3.5, 3)], 2: [(0.5, 1), (3.7, 3)]},
        faults=[Fault(t=2.0, action="kill-hard", node=0, height=1)],
        view_log=[(0.1, 1, 0), (0.1, 2, 0), (3.2, 2, 1), (3.3, 1, 1)],
    )
    c = chain(["h1", "h2", "h3"])
    c[2]["time"], c[3]["time"], c[3]["view"] = 1900, 3100, 1
    time_faults(run, c)
    f = run.faults[0]
    assert (f.next_height, f.next_view) == (3, 1)
    assert f.next_commit_s == pytest.approx(1.5)
    # an honest node was first seen in view 1 at 3.2 s: the commit came 0.3 s after that
    assert f.view_change_s == pytest.approx(1.2)
    assert f.commit_after_view_change_s == pytest.approx(0.3)


def test_evidence_judgement():
    blame = Counter({"equivocation@node0": 3, "invalid-message@node2": 1})
    # expected evidence against byzantine node 0: ok; suspicion of honest node 2 is tolerated
    res = {c.name: c.result for c in judge_evidence(blame, {1: 3}, [1, 2, 3], [0], True)}
    assert res == {"evidence reported": "ok"}
    # nothing blames the byzantine node although the scenario expects it
    res = {c.name: c.result for c in judge_evidence(
        Counter({"invalid-message@node2": 1}), {1: 1}, [1, 2, 3], [0], True)}
    assert res["evidence reported"] == VIOLATED
    # proof of equivocation against an honest node is a violation even when not expected
    res = {c.name: c.result for c in judge_evidence(
        Counter({"equivocation@node3": 1}), {1: 1}, [1, 2, 3], [0], False)}
    assert res["no honest node proven faulty"] == VIOLATED


def test_conviction_judgement():
    # every honest node reports byzantine node 0 convicted at one height: ok
    res = {c.name: c.result for c in judge_convictions(
        {1: {0: 5}, 2: {0: 5}, 3: {0: 5}}, [1, 2, 3], (0,))}
    assert res == {"expected convictions": "ok"}
    # one honest node has not convicted it (or the heights differ): violated
    res = {c.name: c.result for c in judge_convictions(
        {1: {0: 5}, 2: {}, 3: {0: 6}}, [1, 2, 3], (0,))}
    assert res["expected convictions"] == VIOLATED
    assert res["convictions agree"] == VIOLATED
    # an honest node convicted is a violation even when no conviction is expected
    res = {c.name: c.result for c in judge_convictions({1: {2: 4}, 2: {2: 4}}, [1, 2, 3], ())}
    assert res["no honest node convicted"] == VIOLATED
    # expected but no node answered at all
    res = {c.name: c.result for c in judge_convictions({}, [1, 2, 3], (0,))}
    assert res["expected convictions"] == VIOLATED


def test_expect_convicted_is_a_list_of_node_indexes():
    sc = parse_scenario('name = "x"\n[expect]\nconvicted = [0]\n')
    assert sc.expect.convicted == (0,)
    assert load_scenario("equivocate-primary").expect.convicted == (0,)
    with pytest.raises(ScenarioError, match="convicted"):
        parse_scenario('name = "x"\n[expect]\nconvicted = "zero"\n')


def test_a_view_change_under_way_at_the_fault_is_timed_from_the_fault():
    # status showed view 1 when node 1 (its primary) was killed, but node 2 was already seen
    # in view 2 before: the commit in view 2 counts from the fault
    run = SimpleNamespace(
        t0_wall_ms=0.0, honest=[0, 2, 3], lock=threading.Lock(),
        heights={0: [(0.5, 1), (3.8, 2)], 2: [(0.5, 1)], 3: []},
        faults=[Fault(t=2.0, action="kill-hard", node=1, height=1, view=1)],
        view_log=[(0.1, 2, 1), (1.9, 2, 2), (2.5, 0, 2)],
    )
    c = chain(["h1", "h2"])
    c[2]["time"], c[2]["view"] = 2100, 2
    time_faults(run, c)
    f = run.faults[0]
    assert (f.next_view, f.next_commit_s, f.view_change_s) == (2, pytest.approx(1.8), 0.0)
    assert f.commit_after_view_change_s == pytest.approx(1.8)


def _idle_run(heights: dict[int, list[tuple[float, int]]], faults: list) -> SimpleNamespace:
    return SimpleNamespace(lock=threading.Lock(), heights=heights, faults=faults,
                           honest=[0, 1, 2, 3], live_honest=lambda: [0, 1, 2, 3],
                           now=lambda: 100.0)


def test_the_idle_scenario_runs_without_load_and_judges_heartbeats_within_5_s():
    sc = load_scenario("idle-partition-restart")
    assert (sc.load.clients, sc.load.txs, sc.expect.idle_block_s) == (0, 0, 5.0)
    assert [p.action for p in sc.perturbations] == ["partition", "kill-hard", "restart"]


def test_idle_block_checks_flag_a_cluster_stuck_at_one_height():
    from testnet.attack import Check
    from testnet.idle_check import idle_block_checks

    faults = [Fault(3.0, "partition", 3, 4), Fault(23.0, "heal", 3, 24),
              Fault(27.5, "restart", 2, 25)]
    stuck = {i: [(1.0, 4), (22.0, 24), (23.0, 25), (28.0, 25)] for i in range(4)}
    got = {c.name: c.result for c in idle_block_checks(_idle_run(stuck, faults), 5.0, Check)}
    assert got == {"idle heartbeat block after every fault": VIOLATED,
                   "idle heartbeat blocks on every node after the heal": VIOLATED}
    live = {i: [(1.0, 4), (4.0, 5), (22.0, 24), (23.5, 25), (28.0, 26)] for i in range(4)}
    got = {c.name: c.result for c in idle_block_checks(_idle_run(live, faults), 5.0, Check)}
    assert set(got.values()) == {"ok"}
