"""docs/grafana/bftnode-dashboard.json only graphs metrics a node exports: every series named
in a panel's query is in a node's registry (bftnode.metrics) or the RPC server's
(bftnode.rpc.metrics), with the suffix its type gives it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from bftnode.metrics import NodeMetrics
from bftnode.rpc.metrics import RPCMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "bftnode-dashboard.json"
SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "summary": ("_sum", "_count", ""), "info": ("_info",)}


def _exported() -> set[str]:
    names: set[str] = set()
    for registry in (NodeMetrics(0).registry, RPCMetrics().registry):
        for line in generate_latest(registry).decode().splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                names |= {m.group(1) + s for s in SUFFIXES.get(m.group(2), ("",))}
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_queried_series_is_exported():
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    series = {n for e in exprs for n in re.findall(r"\b((?:bftnode|process|python)_[a-z_]+)", e)}
    assert len(dash["panels"]) >= 10 and series
    missing = series - _exported()
    assert not missing, f"the dashboard queries series no node exports: {sorted(missing)}"
