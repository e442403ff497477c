"""A read flood against the primary of a real 4-process testnet (issue 27, item 1): 8
connections loop batches of full-page kv_range calls and batches of blockchain calls while
puts and a `status` hammer go on. No view change may follow, put p50 under the flood stays
within 2x of the quiet one and status p99 under 200 ms. The driver is testnet/read_flood.py;
this is its short version (400 keys, 4 s quiet, 8 s flood); the 60-s figures come from
`python -m testnet read-flood --duration 60 --json` (docs/performance.md).
"""

from __future__ import annotations

import pytest

from testnet import launcher
from testnet.ports import free_port_base
from testnet.read_flood import FloodSpec, measure, seed

pytestmark = pytest.mark.integration
SPEC = FloodSpec(keys=400, readers=8, kv_batch=20, chain_batch=50, quiet_s=4.0, flood_s=8.0)


def test_a_read_flood_on_the_primary_causes_no_view_change(tmp_path):
    d = tmp_path / "net"
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), log_level="warning")
    try:
        urls = [n["rpc"] for n in m["nodes"]]
        seed(urls[0], tmp_path, SPEC.keys, SPEC.value_bytes)
        fig = measure(urls, tmp_path, SPEC)
        print("READ FLOOD", fig)
        assert fig["views_before"] == [(0, False)] * 4, fig
        assert fig["answers"]["kv_range"].get("ok") and fig["answers"]["blockchain"].get("ok"), fig
        assert any(t.get("-32008") for t in fig["answers"].values()), (
            f"the per-IP bucket never answered: {fig}")
        assert fig["failures"] == [], fig
    finally:
        launcher.down(d)
