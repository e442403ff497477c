"""The attack runner must fail when it should: a planted "acknowledged" tx hash that was never
submitted (so it is in no ledger) makes `python -m testnet attack` report the violation and exit
non-zero, while the same run's real checks still pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_cli_reports_a_planted_missing_ack_and_exits_non_zero(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "testnet", "attack", "baseline", "--json",
         "--plant-fake-ack", "1", "--dir", str(tmp_path / "tn")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert p.returncode == 1, p.stderr[-2000:]
    rep = json.loads(p.stdout)
    checks = {c["name"]: c for c in rep["checks"]}
    acked = checks["acked txs exactly once"]
    assert acked["result"] == "violated"
    assert "fa00fa00fa" in acked["detail"] and "in no honest node's ledger" in acked["detail"]
    assert rep["ok"] is False
    # everything else about the run was fine: only the planted hash is blamed
    assert checks["agreement"]["result"] == "ok"
    assert checks["progress after faults"]["result"] == "ok"
    assert rep["acked"] > 0
    # the testnet was stopped afterwards
    m = json.loads((tmp_path / "tn" / "testnet.json").read_text())
    assert all(n["pid"] is None for n in m["nodes"])
