"""Heavy legal load never halts the chain (issue 36), on real testnets through the attack runner.

(c) `relay-flood`: a backup relays VALID client-signed 2 KB puts (its own client keys, fresh
request seqs) as fast as it can in signed FORWARDs to every replica, next to an honest put load.
Honest replicas admit at most max_pending_bytes / n of a relay's requests and drop the rest;
honest puts must keep p50 <= 2x and p99 <= 5x their latency in the same scenario without the
flood (the runner's `--baseline`), with no view change.

(a) `burst-kill-primary`: a burst of up to 20,000 valid 2 KB puts from 32 clients with the
primary SIGKILLed in the middle of it: the chain commits again within 5 s of the view change,
and every acknowledged tx is on every honest ledger exactly once (`python -m testnet attack
burst-kill-primary --repeat 20` for the 20 runs).

The manifest and strategy checks need no testnet; the real runs (40-60 s each) are `slow`,
except (c) against its baseline, `manual` while its bound is open (docs/testing.md).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from bftnode.app import ops
from consensus.auth import Authenticator, Ed25519Signer, Ed25519Verifier
from consensus.events import Output, Tick
from consensus.messages import Forward
from consensus.normal import check_request
from consensus.replica import MAX_FORWARD_REQUESTS
from consensus.types import Config
from testnet.adversary import (
    RELAY_FLOOD_KEYS,
    ByzContext,
    DetRng,
    RelayFlood,
    parse_strategy,
    relay_flood_signer,
)
from testnet.attack import (
    Check,
    Fault,
    ScenarioError,
    load_scenario,
    parse_scenario,
    run_scenario,
)
from testnet.heavy_load import heavy_load_checks, without_byzantine

pytestmark = pytest.mark.integration

DOMAIN = b"heavy-load-test-chain"


def _failed(rep: dict) -> list[dict]:
    return [c for c in rep["checks"] if c["result"] == "violated"]


def _check(rep: dict, name: str) -> dict:
    (c,) = [c for c in rep["checks"] if c["name"] == name]
    return c


def _ctx(rid: int = 3) -> ByzContext:
    signers = [Ed25519Signer.from_seed_int(i, DOMAIN) for i in range(4)]
    auth = Authenticator(DOMAIN, signers[rid], Ed25519Verifier(),
                         [s.public_key for s in signers])
    return ByzContext(None, rid, Config(n=4), auth, DetRng(0), None)


def _tick(flood: RelayFlood, ctx: ByzContext, now_ms: int) -> Output:
    ctx.now_ms = now_ms  # what ByzantineReplica.step does with a Tick
    return flood.rewrite(ctx, Tick(now_ms), Output())


# ---------------------------------------------------------------- the strategy (no testnet)


def test_relay_flood_forwards_valid_2kb_puts_signed_for_the_chain():
    ctx, flood = _ctx(), parse_strategy("relay-flood:50:10")
    assert isinstance(flood, RelayFlood) and (flood.per_tick, flood.every_ms) == (50, 10)
    out = _tick(flood, ctx, 1_000)
    assert out.next_deadline_ms == 1_010  # asks for the next tick
    (send,) = out.send
    fwd = send.message
    assert send.to is None and isinstance(fwd, Forward) and fwd.replica == 3
    assert ctx.auth.verify(fwd)  # a signed FORWARD from the relaying validator
    assert len(fwd.requests) == 50
    for req in fwd.requests:
        assert check_request(ctx.config, ctx.auth, req) is None  # nothing to blame it for
        op = ops.decode_op(req.op)
        assert isinstance(op, ops.Put) and len(op.value) == 2048
    # not again before its period
    assert _tick(flood, ctx, 1_005).send == []


def test_relay_flood_is_deterministic_with_fresh_seqs_over_its_client_keys():
    a, b = RelayFlood(per_tick=RELAY_FLOOD_KEYS), RelayFlood(per_tick=RELAY_FLOOD_KEYS)
    ca, cb = _ctx(), _ctx()
    ra = [r for t in (0, 20) for s in _tick(a, ca, t).send for r in s.message.requests]
    rb = [r for t in (0, 20) for s in _tick(b, cb, t).send for r in s.message.requests]
    assert ra == rb  # same replica, same requests: a harness can recompute them
    keys = {relay_flood_signer(3, k).public_key for k in range(RELAY_FLOOD_KEYS)}
    assert {r.client_id for r in ra} == keys
    seen = {(r.client_id, r.request_seq) for r in ra}
    assert len(seen) == len(ra) == 2 * RELAY_FLOOD_KEYS  # every request fresh
    assert {r.request_seq for r in ra} == {1, 2}
    assert relay_flood_signer(2, 0).public_key not in keys  # per replica


def test_relay_flood_splits_forwards_like_an_honest_relay():
    ctx = _ctx()
    out = _tick(RelayFlood(per_tick=1_200), ctx, 0)
    sizes = [len(s.message.requests) for s in out.send]
    assert sum(sizes) == 1_200 and len(sizes) >= 3  # at most 1 MiB of requests each
    assert all(n <= MAX_FORWARD_REQUESTS for n in sizes)
    with pytest.raises(ValueError):
        parse_strategy(f"relay-flood:{MAX_FORWARD_REQUESTS + 1}")


# ---------------------------------------------------------------- manifests (no testnet)


def test_the_relay_flood_scenario_floods_from_a_backup_and_bounds_latency_and_views():
    sc = load_scenario("relay-flood")
    assert sc.nodes == 4 and list(sc.byzantine) == [3]  # a backup in view 0
    assert sc.byzantine[3] == ["relay-flood"]
    assert sc.load.clients >= 2 and sc.load.rate > 0  # an honest put load, paced
    assert sc.expect.max_view == 0
    assert (sc.expect.max_p50_ratio, sc.expect.max_p99_ratio) == (2.0, 5.0)
    base = without_byzantine(sc)
    assert base.byzantine == {} and base.load == sc.load and base.expect.max_view == 0
    assert base.expect.max_p50_ratio == 0  # the baseline is not compared with itself


def test_the_burst_scenario_kills_the_primary_in_the_middle_of_20000_2kb_puts():
    sc = load_scenario("burst-kill-primary")
    ld = sc.load
    assert ld.txs == 20_000 and ld.value_bytes == 2048 and 32 <= ld.clients <= 64
    assert ld.rate == 0 and ld.batch > 1 and ld.duration_s <= 40  # fast, bounded in time
    (p,) = sc.perturbations
    assert (p.action, p.node) == ("kill-hard", "primary") and p.after_acked > 0
    assert sc.expect.max_commit_after_view_change_s == 5
    assert sc.byzantine == {}


def test_load_and_perturbation_fields_are_checked():
    sc = parse_scenario("[load]\nbatch = 5\nvalue_bytes = 100\n[[perturbation]]\nat_s = 1\n"
                        "action = 'kill'\nafter_acked = 7\n")
    assert (sc.load.batch, sc.load.value_bytes, sc.perturbations[0].after_acked) == (5, 100, 7)
    with pytest.raises(ScenarioError, match="batch"):
        parse_scenario("[load]\nbatch = 0\n")
    with pytest.raises(ScenarioError, match="after_acked"):
        parse_scenario("[[perturbation]]\nat_s = 1\naction = 'kill'\nafter_acked = -1\n")


def _run(sc, lat, views=(), faults=()):
    return SimpleNamespace(sc=sc, honest=[0, 1, 2], lock=threading.Lock(), put_lat_ms=lat,
                           view_log=list(views), views={}, faults=list(faults))


def test_latency_and_view_checks_judge_against_the_baseline():
    sc = load_scenario("relay-flood")
    base = {"put_latency_ms": {"p50": 50.0, "p99": 100.0}}
    res = {c.name: c.result for c in heavy_load_checks(_run(sc, [90.0] * 99 + [400.0]), base,
                                                       Check)}
    assert res == {"no view change": "ok", "honest put p50 vs baseline": "ok",
                   "honest put p99 vs baseline": "ok"}
    slow = _run(sc, [110.0] * 98 + [600.0] * 2, views=[(3.0, 1, 1)])
    res = {c.name: c.result for c in heavy_load_checks(slow, base, Check)}
    assert res == {"no view change": "violated", "honest put p50 vs baseline": "violated",
                   "honest put p99 vs baseline": "violated"}
    # without a baseline the latency is reported only
    res = {c.name: c.result for c in heavy_load_checks(_run(sc, [1.0]), None, Check)}
    assert res["honest put latency"] == "info"


def test_commit_after_view_change_is_bounded():
    sc = load_scenario("burst-kill-primary")
    ok = Fault(10.0, "kill-hard", 0, 30, next_commit_s=2.5, next_view=1,
               view_change_s=1.2, commit_after_view_change_s=1.3)
    late = Fault(10.0, "kill-hard", 0, 30, next_commit_s=7.5, next_view=1,
                 view_change_s=1.2, commit_after_view_change_s=6.3)
    never = Fault(10.0, "kill-hard", 0, 30)
    for fault, want in ((ok, "ok"), (late, "violated"), (never, "violated")):
        (c,) = [c for c in heavy_load_checks(_run(sc, [], faults=[fault]), None, Check)
                if c.name == "commit after view change"]
        assert c.result == want, c


# ---------------------------------------------------------------- real testnets


@pytest.mark.manual  # the scenario itself runs in the slow suite (test_scenarios.py)
@pytest.mark.xfail(reason="issue 36 (c) open: no view change and p99 <= x2.4 in 20 of 20 runs, "
                          "but honest p50 x0.81-x2.83 of the baseline: over the 2x bound in 3 "
                          "of 20 (docs/testing.md)",
                   strict=False)
def test_a_relay_flooding_backup_keeps_honest_latency_and_the_view(tmp_path):
    sc = load_scenario("relay-flood")
    base = run_scenario(without_byzantine(sc), tmp_path / "base")
    assert base["ok"], _failed(base)
    rep = run_scenario(sc, tmp_path / "tn", baseline=base)
    print(f"\nbaseline {base['put_latency_ms']}, view {base['max_view']}; relay-flood "
          f"{rep['put_latency_ms']}, view {rep['max_view']}; drops {rep['relay_drops']}")
    assert _check(rep, "honest nodes running")["result"] == "ok"
    assert _check(rep, "agreement")["result"] == "ok"
    assert _check(rep, "acked txs exactly once")["result"] == "ok"
    assert _check(rep, "no view change")["result"] == "ok", rep["max_view"]
    assert _check(rep, "honest put p50 vs baseline")["result"] == "ok"
    assert _check(rep, "honest put p99 vs baseline")["result"] == "ok"
    assert rep["ok"], _failed(rep)


@pytest.mark.slow
def test_a_burst_with_the_primary_killed_commits_again_within_5s_and_loses_nothing(tmp_path):
    rep = run_scenario(load_scenario("burst-kill-primary"), tmp_path / "tn")
    print(f"\n{rep['faults']}; acked {rep['acked']}/{rep['submitted']}, "
          f"highest view {rep['max_view']}")
    (kill,) = rep["faults"]
    assert kill["action"] == "kill-hard" and "acked" in kill["note"]
    assert _check(rep, "commit after view change")["result"] == "ok"
    assert _check(rep, "acked txs exactly once")["result"] == "ok"
    assert rep["ok"], _failed(rep)
