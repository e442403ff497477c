"""Hostile input on a real testnet (issue 35), through the attack runner.

`relay-poison`: a validator relays and proposes client-signed txs whose op bytes no client
builds (nesting 10,000 deep under an unknown field, huge integers, wrong types, unknown ops).
Before the fixes (c53f617^) every honest node that executed one stopped with RecursionError
("node failed") and stopped again on restart; now each poison tx is on every honest ledger with
the same error result and the load keeps committing.

`hostile-client`: a client bursts the most expensive valid txs (compacts over a 40,960-entry
history, txns of 128 full-keyspace range reads, the largest legal txns) and sends hostile
JSON-RPC params. Every hostile call must answer -32602 or -32700 (before aeb5424: -32603 and
HTTP 500 for 8 of the 27 calls), honest nodes stay up, every hostile tx executes with a
result code and never internal_error, and commits stay at most 2 s apart with agreed time within
max_clock_skew_ms during the burst (before the per-block budget, one block of 100 range txns
kept every node busy for about 30 s; docs/consistency.md "Budgets").

The scenarios take 15-70 s each, so the runs are marked `slow`; the manifest checks are not.
"""

from __future__ import annotations

import pytest

from testnet.adversary import poison_ops
from testnet.attack import ScenarioError, load_scenario, parse_scenario, run_scenario
from testnet.client_attack import EXPECTED_CODES, HOSTILE_RPC, ClientAttack

pytestmark = pytest.mark.integration


def _failed(rep: dict) -> list[dict]:
    return [c for c in rep["checks"] if c["result"] == "violated"]


def _check(rep: dict, name: str) -> dict:
    (c,) = [c for c in rep["checks"] if c["name"] == name]
    return c


# ---------------------------------------------------------------- manifests (no testnet)


def test_client_attack_table_parses_with_its_defaults_and_names_unknown_fields():
    sc = parse_scenario("[client_attack]\nrange_txns = 5\n")
    assert sc.client_attack == ClientAttack(range_txns=5)
    assert parse_scenario("").client_attack is None
    with pytest.raises(ScenarioError, match=r"\[client_attack\].*unknown field"):
        parse_scenario("[client_attack]\nranges = 5\n")
    with pytest.raises(ScenarioError, match="must be int"):
        parse_scenario("[client_attack]\ncompacts = 'many'\n")


def test_the_shipped_hostile_scenarios_say_what_they_attack():
    sc = load_scenario("hostile-client")
    assert sc.client_attack is not None and sc.client_attack.max_block_interval_ms == 2000
    assert sc.client_attack.compacts >= 100 and sc.client_attack.range_txns >= 100
    for name, n in (("relay-poison", 4), ("relay-poison-7", 7)):
        sc = load_scenario(name)
        assert sc.nodes == n
        assert all(s.startswith("relay-poison") for specs in sc.byzantine.values()
                   for s in specs)


def test_the_hostile_rpc_catalogue_covers_the_issue():
    labels = [label for label, _, _ in HOSTILE_RPC]
    assert len(labels) == len(set(labels))
    text = " ".join(labels)
    for what in ("4,400-digit", "2^64", "surrogate", "10,000 deep", "100,000 deep", "GET"):
        assert what in text, what
    assert EXPECTED_CODES == {-32602, -32700}


def test_the_poison_includes_a_map_nested_10000_deep_under_an_unknown_field():
    deep = dict(poison_ops(10_000, 64 * 1024))["deep-map-before-tag"]
    assert deep.count(b"\x81\xc0") >= 10_000 and len(deep) <= 64 * 1024


# ---------------------------------------------------------------- real testnets


@pytest.mark.slow
@pytest.mark.parametrize("name", ["relay-poison", "relay-poison-7"])
def test_relayed_poison_fails_cleanly_and_the_honest_nodes_keep_committing(name, tmp_path):
    rep = run_scenario(load_scenario(name), tmp_path / "tn")
    assert rep["ok"], _failed(rep)
    assert _check(rep, "honest nodes running")["result"] == "ok"
    poison = rep["poison"]
    assert poison["on_ledger"] == poison["checked"] > 0, poison
    assert set(poison["results"]) == {v for v, _ in poison_ops(10_000, 64 * 1024)}
    for variant, codes in poison["results"].items():
        assert set(codes) <= {"bad_op"}, (variant, codes)


@pytest.fixture(scope="module")
def hostile_client_run(tmp_path_factory):
    return run_scenario(load_scenario("hostile-client"), tmp_path_factory.mktemp("hc") / "tn")


@pytest.mark.slow
def test_hostile_rpc_params_answer_32602_or_32700_never_32603(hostile_client_run):
    rep = hostile_client_run
    ca = rep["client_attack"]
    assert ca["rpc_calls"] == len(HOSTILE_RPC) * ca["config"]["rpc_rounds"]
    assert ca["rpc_internal_errors"] == 0 and not ca["rpc_unexpected"], ca
    assert set(ca["rpc_answers"]) <= {"-32602", "-32700"}, ca["rpc_answers"]


@pytest.mark.slow
def test_honest_nodes_stay_up_and_every_hostile_tx_executes(hostile_client_run):
    rep = hostile_client_run
    assert _check(rep, "honest nodes running")["result"] == "ok"
    assert _check(rep, "agreement")["result"] == "ok"
    assert _check(rep, "hostile txs executed")["result"] == "ok"
    codes = rep["client_attack"]["codes"]
    assert codes["range"] == {"budget_exceeded": 100}, codes
    assert "internal_error" not in str(codes)


@pytest.mark.slow
def test_commits_and_agreed_time_keep_pace_during_the_burst(hostile_client_run):
    rep = hostile_client_run
    ca = rep["client_attack"]
    assert _check(rep, "block interval under the burst")["result"] == "ok", ca
    assert _check(rep, "agreed time within skew under the burst")["result"] == "ok", ca
    assert ca["max_commit_gap_ms"] <= 2000 and ca["max_time_step_ms"] <= 2000
