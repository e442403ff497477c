"""A tx whose `valid_until` height has passed is EXPIRED on every node and can never commit:
submitted afterwards to every node it is refused, and no block of the ledger contains it."""

from __future__ import annotations

import os

import pytest

from bftnode.app import ops
from bftnode.client import Client, ClientError, TxRejected
from consensus import request_digest

from .conftest import HEARTBEAT_MS, rpc, wait_until

pytestmark = pytest.mark.integration


def heights(urls: list[str]) -> list[int]:
    return [rpc(u, "status")["height"] for u in urls]


def ledger_hashes(url: str, lo: int, hi: int) -> set[str]:
    """Every tx hash in blocks [lo, hi] of one node (headers list tx_hashes)."""
    out: set[str] = set()
    h = hi
    while h >= lo:
        got = rpc(url, "blockchain", min_height=lo, max_height=h)
        for b in got["blocks"]:
            out.update(b["tx_hashes"])
        h = min(b["height"] for b in got["blocks"]) - 1 if got["blocks"] else lo - 1
    return out


def test_expired_tx_is_reported_expired_by_every_node_and_never_commits(urls, tmp_path):
    key = f"exp/{os.getpid()}".encode()
    with Client(urls, tmp_path / "c.key") as c:
        start = max(heights(urls))
        req = c.sign(ops.put(key, b"too-late"), valid_until=start + 2)
        tx_hash = request_digest(req).hex()
        # idle cluster: heartbeat blocks move the height past valid_until on every node
        wait_until(lambda: min(heights(urls)) > req.valid_until, 20 * HEARTBEAT_MS / 1000 + 10,
                   "every node past valid_until")
        for u in urls:  # a node that never saw the tx judges it from the signed tx itself
            st = c.tx_status(req, url=u)
            assert st["status"] == "EXPIRED" and st["committed"] is False, (u, st)
            assert st["hash"] == tx_hash and st["valid_until"] == req.valid_until

        for u in urls:  # submitted after expiry, to every node: refused with the reason
            with Client(u, tmp_path / "c.key", retries=0) as one:
                with pytest.raises(TxRejected, match="expired"):
                    one.submit(req, timeout=5.0)
        for u in urls:  # every node saw it now: the bare hash is enough
            st = c.tx_status(tx_hash, url=u)
            assert st["status"] == "EXPIRED", (u, st)

        # a few more blocks later it is still nowhere: not in the tx index, not in any block,
        # and its write never happened
        top = max(heights(urls))
        wait_until(lambda: min(heights(urls)) >= top + 3, 20, "three more blocks")
        for u in urls:
            assert rpc(u, "tx_status", hash=tx_hash)["committed"] is False
            with pytest.raises(ClientError):
                Client(u, tmp_path / "c.key", retries=0).tx(tx_hash)
            assert tx_hash not in ledger_hashes(u, start, min(heights(urls)))
            assert rpc(u, "kv_get", key=key.decode())["found"] is False


def test_tx_within_valid_until_commits_and_status_says_so(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c:
        h = max(heights(urls))
        req = c.sign(ops.put(b"exp/ok", b"in-time"), valid_until=h + 1000)
        assert c.tx_status(req, url=urls[0])["status"] == "UNKNOWN"  # never submitted anywhere
        res = c.submit(req)
        assert res["height"] <= req.valid_until
        wait_until(lambda: min(heights(urls)) >= res["height"], 20, "every node at the tx")
        for u in urls:
            st = c.tx_status(request_digest(req), url=u)
            assert st["status"] == "COMMITTED" and st["tx"]["height"] == res["height"], (u, st)
        assert c.tx_status(os.urandom(32), url=urls[1])["status"] == "UNKNOWN"


def test_tx_is_pending_while_no_quorum_then_committed(primitives_testnet, urls, tmp_path):
    """PENDING is real: with two of four replicas down nothing commits, so an accepted tx
    waits; once they are back it commits (and is COMMITTED everywhere)."""
    import base64

    from consensus import encode
    from testnet import launcher

    d = primitives_testnet["dir"]
    primary = rpc(urls[0], "status")["primary"]
    down = [i for i in range(len(urls)) if i != primary][:2]
    with Client(urls[primary], tmp_path / "c.key") as c:
        c.chain_info()
        req = c.sign(ops.put(b"exp/pending", b"x"),
                     valid_until=rpc(urls[primary], "status")["height"] + 10_000)
        for i in down:
            launcher.kill(d, i, hard=True)
        try:
            got = rpc(urls[primary], "broadcast_tx_sync",
                      tx=base64.b64encode(encode(req)).decode())
            assert got["status"] == "accepted"
            st = c.tx_status(req, url=urls[primary])
            assert st["status"] == "PENDING", st
        finally:
            for i in down:
                launcher.restart(d, i)
        wait_until(lambda: all(c.tx_status(request_digest(req), url=u)["status"] == "COMMITTED"
                               for u in urls), 60, "the pending tx to commit everywhere")
