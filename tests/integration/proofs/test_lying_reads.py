"""The `lying-reads` strategy on a real testnet (processes, libp2p, LevelDB): a client that
verifies every answer against the pinned genesis detects every lie the node tells, and
refuses no honest answer. The default suite runs 200 reads; the slow one >= 1,000 (the
figures of `python -m testnet attack lying-reads`)."""

from __future__ import annotations

import pytest

from testnet.adversary.lying_reads import tell
from testnet.lying_check import run_lying_reads
from testnet.ports import free_port_base

pytestmark = [pytest.mark.integration]


def _check(rep: dict) -> None:
    assert rep["lies_told"] > 0
    assert rep["lies_detected"] == rep["lies_told"], rep
    assert rep["outcomes"].get("other_error", 0) == 0, rep["errors"]
    assert rep["ok"], rep


def test_every_lie_of_a_lying_node_is_detected(tmp_path):
    _check(run_lying_reads(200, tmp_path / "net", free_port_base(16)))


@pytest.mark.slow
def test_every_lie_is_detected_over_a_thousand_reads(tmp_path):
    rep = run_lying_reads(1500, tmp_path / "net", free_port_base(16))
    _check(rep)
    assert rep["reads"] >= 1000 and "old-version" in rep["lie_kinds"]


def test_each_lie_changes_the_answer():
    r = {"found": True, "value": "v", "proof": {"state": []}, "kvs": [{"key": "a",
         "value": "b"}], "count": 1, "holder": {"token": 3, "lease": 1}}
    for kind in ("flip-value", "hide-key", "strip-proof"):
        a = {**r, "proof": dict(r["proof"])}
        tell(kind, "kv_get", a)
        assert a != r, kind
