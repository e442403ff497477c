"""One short nemesis run on real processes in real network namespaces: 8 clients under a
seeded fault schedule (seed 2: a minority partition, a Byzantine restart, clock skew and a
bridge partition in 40 s), and every verdict must be ok. Needs root and `ip netns`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testnet import netns

ROOT = Path(__file__).resolve().parents[3]


pytestmark = [pytest.mark.slow, pytest.mark.integration,
              pytest.mark.skipif(netns.unusable() is not None, reason=str(netns.unusable()))]


def test_a_40s_nemesis_run_keeps_every_guarantee(tmp_path):
    out = tmp_path / "nemesis"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "testnet", "nemesis", "--duration", "40",
                        "--seed", "2", "--out", str(out), "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=280)
    assert r.stdout.strip(), r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["verdicts"] == dict.fromkeys(report["verdicts"], "ok"), (
        json.dumps(json.loads((out / "report.json").read_text())["details"])[:4000])
    assert r.returncode == 0
    assert report["linearizable"] is True and report["lost"] == 0
    assert len(report["faults"]) >= 3, report["faults"]
    assert not report["fault_errors"]
    ok_ops = sum(row["ok"] for row in report["ops_by"].values())
    assert ok_ops > 1000 and report["ops_by"]["cas"]["ok"] > 0
    assert report["ops_by"]["fence"]["ok"] > 0
    assert (out / "timeline.png").stat().st_size > 10_000
    assert (out / "history.jsonl").exists()
