"""Acceptance (issue 35, slow): 1,000 connections sending their request head or body at one
byte per second are all closed within the documented deadlines (10 s, default limits) while a
normal client's `status` answers within 1 s throughout; the server logs no traceback.
Run with `pytest -m slow tests/unit/rpc/test_rpc_slowloris.py`; figures in the output."""

from __future__ import annotations

import json
import math

import pytest

from bftnode.rpc.registry import ERROR_LOG_PER_S

from .slowloris import measure


@pytest.mark.slow
@pytest.mark.parametrize("addresses", [4, 1], ids=["under_the_caps", "one_address"])
async def test_1000_slow_connections_are_closed_at_the_deadlines_and_status_stays_fast(
    tmp_path, addresses
):
    result = await measure(1000, tmp_path / "server.log", addresses)
    print(json.dumps(result))
    assert result["ok"], result
    assert sum(k["connections"] for k in result["slow"].values()) == 1000
    if addresses == 1:  # the per-address cap (256) refuses the rest at once
        assert sum(result["server_metrics"]["connections_refused"].values()) == 1000 - 256
        # ...and logs them at ERROR_LOG_PER_S lines a second for that address, not one each
        seconds = math.ceil(result["opened_in_s"]) + 1
        assert 1 <= result["server_log"]["connections_refused"] <= ERROR_LOG_PER_S * seconds
    else:
        assert sum(result["server_metrics"]["connections_refused"].values()) == 0
