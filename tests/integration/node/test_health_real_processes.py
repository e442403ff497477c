"""`GET /health` on a real 4-process testnet (real libp2p, LevelDB; issue 27): 503 with the
reason in each of the four conditions, built with link faults (testnet/adversary/link_faults.py)
on one node at a time, and 200 again once the links heal.

- stalled: node 2 loses 95% of its frames both ways; the few peer STATUS that pass show peers
  ahead while it commits nothing (health_stall_s = 2 s).
- behind: node 3 the same, until the others are more than health_max_behind_blocks = 5 ahead.
- no_quorum, then view_change: the primary and another node are SIGKILLed; node 0 or 1 (the
  one alive) sees 2 of 4 validators and, its primary watch firing, sits in a view change past
  health_view_change_s = 2 s; both come back with `restart`.
Each node's other bounds are set out of reach so that its answer names exactly one condition
(two for the cut-off node). Puts to node 0 keep the chain moving.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx
import pytest

from bftnode.client import Client
from bftnode.config import load_config, write_config
from testnet import launcher, links
from testnet.adversary.link_faults import LinkRules
from testnet.ports import free_port_base

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAR = 100_000.0
BOUNDS = {
    0: {"health_view_change_s": 2.0, "health_stall_s": FAR, "health_max_behind_blocks": 100_000},
    1: {"health_view_change_s": 2.0, "health_stall_s": FAR, "health_max_behind_blocks": 100_000},
    2: {"health_view_change_s": FAR, "health_stall_s": 2.0, "health_max_behind_blocks": 100_000},
    3: {"health_view_change_s": FAR, "health_stall_s": FAR, "health_max_behind_blocks": 5},
}


def _health(url: str) -> tuple[int, dict]:
    r = httpx.get(url + "/health", timeout=5)
    return r.status_code, r.json()


def _wait_health(url: str, want, timeout: float = 40.0) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        code, h = _health(url)
        if want(code, h):
            return code, h
        assert time.monotonic() < deadline, f"health never turned as expected: {code} {h}"
        time.sleep(0.2)


def _lossy(i: int, n: int = 4, p: float = 0.95) -> dict[int, LinkRules]:
    return {i: LinkRules(drop={j: p for j in range(n) if j != i})}


@pytest.fixture
def net(tmp_path):
    d = tmp_path / "net"
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), log_level="warning")
    try:
        for i, bounds in BOUNDS.items():
            home = m["nodes"][i]["home"]
            write_config(dataclasses.replace(load_config(home), **bounds))
            launcher.restart(d, i)
        yield d, [n["rpc"] for n in launcher.read_manifest(d)["nodes"]]
    finally:
        launcher.down(d)


class _Puts:
    """Sequential puts to node 0 (blocks for the others to be ahead by), bounded in time."""

    def __init__(self, url: str, key_path) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(url, key_path))

    def _loop(self, url: str, key_path) -> None:
        deadline = time.monotonic() + 300
        with Client(url, key_path, verify="none") as c:
            i = 0
            while not self.stop.is_set() and time.monotonic() < deadline:
                c.put(f"h/{i % 20}", str(i))
                i += 1

    def __enter__(self) -> _Puts:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)


def _only(*reasons: str):
    return lambda code, h: code == 503 and sorted(h["reasons"]) == sorted(reasons)


def _healthy(code: int, h: dict) -> bool:
    return code == 200 and h["ok"] and h["reasons"] == []


def test_health_is_503_in_each_condition_and_200_once_healed(net, tmp_path):
    d, urls = net
    for u in urls:
        _wait_health(u, _healthy)
    with _Puts(urls[0], tmp_path / "c.key"):
        # stalled: peers ahead (their STATUS), no commit here for over 2 s
        links.set_link_rules(d, _lossy(2))
        code, h = _wait_health(urls[2], _only("stalled"))
        assert h["peer_height"] > h["height"] and h["since_commit_s"] > 2.0, h
        assert any("no commit for" in w for w in h["why"]), h
        links.heal(d)
        _wait_health(urls[2], _healthy)

        # behind: more than 5 blocks behind a peer
        links.set_link_rules(d, _lossy(3))
        code, h = _wait_health(urls[3], _only("behind"))
        assert h["peer_height"] - h["height"] > 5 and h["catching_up"] is True, h
        links.heal(d)
        _wait_health(urls[3], _healthy)

    # no quorum at once, then a view change longer than 2 s: the primary and another die
    primary = httpx.post(urls[0], json={"jsonrpc": "2.0", "id": 1, "method": "status"},
                         timeout=5).json()["result"]["primary"]
    watcher = 1 if primary == 0 else 0  # nodes 0 and 1 have the 2-s view-change bound
    victims = [primary, next(i for i in (2, 3) if i != primary)]
    for i in victims:
        launcher.kill(d, i, hard=True)
    _wait_health(urls[watcher], lambda c, h: c == 503 and "no_quorum" in h["reasons"])
    code, h = _wait_health(urls[watcher], _only("no_quorum", "view_change"))
    assert h["in_view_change_s"] > 2.0 and h["peers"] == 1, h
    for i in victims:
        launcher.restart(d, i)
    # the restarted two catch up first: each turns 200 within a deadline
    for u in urls:
        assert _wait_health(u, _healthy, timeout=60)[0] == 200
