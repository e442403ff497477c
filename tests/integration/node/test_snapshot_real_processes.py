"""Snapshot catch-up on a real 4-process testnet (real libp2p, LevelDB, the state tree on):
nodes 0-2 keep only their last 16 blocks (`retain_blocks`); node 3 is SIGKILLed, its data
directory deleted, and restarted. It cannot replay from genesis (its FETCH-BLOCKS are answered
BLOCKS-PRUNED), so it installs a certified snapshot from one peer, then syncs the blocks after
it, and serves the early state. Roots are certified by the protocol's StateVotes (on with
`authenticated_state`).
"""

from __future__ import annotations

import dataclasses
import shutil
import time

import httpx
import pytest

from bftnode.client import Client
from bftnode.config import load_config, write_config
from testnet import launcher
from testnet.ports import free_port_base

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rpc(url: str, method: str, **params) -> dict:
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                   timeout=10)
    return r.json()


def _status(url: str) -> dict:
    try:
        return _rpc(url, "status")["result"]
    except (httpx.HTTPError, KeyError):
        return {}


def _wait(cond, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_wiped_node_rejoins_by_snapshot_from_peers_that_pruned(tmp_path):
    d = tmp_path / "net"
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), log_level="info",
                    authenticated_state=True)
    try:
        urls = [n["rpc"] for n in m["nodes"]]
        for i in range(3):
            home = m["nodes"][i]["home"]
            write_config(dataclasses.replace(load_config(home), retain_blocks=16))
            launcher.restart(d, i)
        with Client(urls[0], tmp_path / "c.key", verify="none") as c:
            c.put("early", "value-0")
            for i in range(120):  # ~one block each
                c.put(f"k/{i % 10}", str(i))
        _wait(lambda: all(_status(u).get("base_height", 1) > 40 for u in urls[:3]),
              "the peers to prune")
        launcher.kill(d, 3, hard=True)
        shutil.rmtree(load_config(m["nodes"][3]["home"]).data_path)
        target = max(_status(u)["height"] for u in urls[:3])
        launcher.restart(d, 3)
        st = _wait(lambda: (s := _status(urls[3])) and s.get("height", 0) >= target and s,
                   "the wiped node to rejoin")
        assert st["base_height"] > 1  # it started from a snapshot, not from genesis
        log = (d / "node3" / "node.log").read_text()
        assert "snapshot installed" in log
        got = _rpc(urls[3], "kv_get", key="early")["result"]  # state from the snapshot
        assert got["value"] == "value-0"
        for u in (urls[0], urls[3]):  # a pruned height: a clear error naming the base
            err = _rpc(u, "block", height=1)["error"]
            assert err["code"] == -32010 and "lowest height this node keeps" in err["message"]
            assert err["data"]["base_height"] > 1
        # and it keeps committing with the others
        with Client(urls[3], tmp_path / "c.key", verify="none") as c:
            c.put("after", "rejoined")
        h = _status(urls[0])["height"]
        _wait(lambda: _status(urls[3]).get("height", 0) >= h, "node 3 to follow")
        hashes = {_rpc(u, "block", height=h)["result"]["hash"] for u in urls}
        assert len(hashes) == 1
    finally:
        launcher.down(d)
