"""Quotas on a real 4-process testnet (issue 30, item 2): a genesis with small `app.quotas`;
the key, byte and lease limits refuse with tx code 12 `quota_exceeded` and a message naming the
limit, on every node alike, and nothing of the refused tx is applied; a client past its
`max_pending` requests in a node's pool is refused at admission with JSON-RPC -32013."""

from __future__ import annotations

import httpx
import pytest

from bftnode.app import ops
from bftnode.client import Client, TxFailed
from bftnode.client import core as C
from bftnode.home import create_local_chain
from bftnode.keys import NodeKey
from bftnode.rpc.errors import CLIENT_QUOTA
from consensus import Request, sign_request
from testnet import launcher
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration
QUOTAS = {"max_keys": 3, "max_bytes": 64, "max_leases": 1, "max_pending": 2}


def _call(http: httpx.Client, url: str, method: str, params: dict) -> dict:
    return http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                "params": params}).json()["result"]


def test_quota_hits_are_refused_alike_on_every_node(tmp_path):
    d = tmp_path / "net"
    base = free_port_base(8)
    # an open chain (no permission checks): only the quotas refuse
    create_local_chain(d, 4, base_port=base, log_level="warning", app={"quotas": QUOTAS})
    m = launcher.up(d, 4, base_port=base, log_level="warning")
    try:
        urls = [n["rpc"] for n in m["nodes"]]
        with Client(urls[0], tmp_path / "alice.key", verify="none") as alice:
            for i in range(3):
                alice.put(f"q/{i}", "v")
            with pytest.raises(TxFailed) as hit:
                alice.put("q/3", "v")
            assert hit.value.code == 12 and "max_keys = 3" in hit.value.message
            with pytest.raises(TxFailed) as hit:
                alice.put("q/0", "x" * 80)  # an overwrite past max_bytes
            assert hit.value.code == 12 and "max_bytes = 64" in hit.value.message
            alice.lease_grant(60)
            with pytest.raises(TxFailed) as hit:
                alice.lease_grant(60)
            assert hit.value.code == 12 and "max_leases = 1" in hit.value.message
            height = int(alice.status()["height"])
        with httpx.Client(timeout=30) as http:
            for u in urls:  # every node has the same state: the refused txs changed nothing
                got = _call(http, u, "kv_range", {"key": "q/", "min_height": height})
                assert [kv["key"] for kv in got["kvs"]] == ["q/0", "q/1", "q/2"], (u, got)
                assert got["kvs"][0]["value"] == "v"
            # max_pending: a batch array of 12 puts from one fresh key to one node
            key = NodeKey.generate()
            domain = _call(http, urls[1], "validators", {})["chain_id"].encode()
            reqs = [sign_request(domain, key.signer(),
                                 Request(key.public_key, s, ops.put(b"p/%d" % s, b"v")))
                    for s in range(1, 13)]
            payload = C.batch_request([("broadcast_tx_sync", {"tx": C.tx_param(r)})
                                       for r in reqs])
            answers = http.post(urls[1], json=payload).json()
            codes = [a.get("error", {}).get("code") for a in answers]
            assert codes.count(CLIENT_QUOTA) >= 12 - 2 - 2, answers  # 2 pending (+ 2 done)
            refused = next(a["error"] for a in answers if "error" in a)
            assert "max_pending" in refused["message"], refused
            assert refused["data"]["retry_after"] > 0
            # the admitted ones sent again are answered as pending or committed, not refused,
            # while the client is still at its quota
            again = [answers.index(a) for a in answers if "result" in a]
            assert again, answers
            resent = http.post(urls[1], json=[payload[i] for i in again]).json()
            assert all(a.get("result", {}).get("status") in ("accepted", "committed")
                       for a in resent), resent
    finally:
        launcher.down(d)
