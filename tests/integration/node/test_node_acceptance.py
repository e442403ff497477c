"""The node's acceptance, on a real 4-process testnet at the DEFAULT consensus timeouts:
1,000 txs sent through JSON-RPC to different nodes commit exactly once and identically on every
node; a hard-killed primary under load is replaced and commits resume within 5 s; bad input
gets clear JSON-RPC errors and the node keeps serving."""

from __future__ import annotations

import base64
import itertools
import threading
import time

import httpx
import pytest

from bftnode.app import ops
from consensus import Ed25519Signer, Request, encode, request_digest, sign_request
from testnet import launcher

from .conftest import free_port_base
from .test_testnet_processes import call, statuses, wait_until

pytestmark = pytest.mark.integration

_client = Ed25519Signer(b"\x07" * 32)
_seq = itertools.count(1)


def _signed(m, key: bytes, value: bytes) -> Request:
    return sign_request(m["chain_id"].encode(), _client,
                        Request(client_id=b"", request_seq=next(_seq), op=ops.put(key, value)))


def _b64(req: Request) -> str:
    return base64.b64encode(encode(req)).decode()


def _rpc_batch(url: str, calls: list[tuple[str, dict]], timeout: float = 30.0) -> list[dict]:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls)]
    out = httpx.post(url, json=body, timeout=timeout).json()
    return sorted(out, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def testnet(tmp_path_factory):
    d = tmp_path_factory.mktemp("tn-accept")
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8))  # default timeouts on purpose
    try:
        yield d, m
    finally:
        launcher.down(d)


def test_thousand_txs_to_different_nodes_commit_exactly_once_and_identically(testnet):
    d, m = testnet
    reqs = [_signed(m, f"k{i}".encode(), f"v{i}".encode()) for i in range(1000)]
    want = {request_digest(r).hex() for r in reqs}
    for b in range(0, 1000, 50):  # batch arrays, round-robin over the nodes
        url = m["nodes"][(b // 50) % 4]["rpc"]
        res = _rpc_batch(url, [("broadcast_tx_sync", {"tx": _b64(r)}) for r in reqs[b:b + 50]])
        assert all("error" not in r for r in res), [r for r in res if "error" in r][:3]

    def committed_everywhere():
        st = statuses(m, range(4))
        h = min(s["height"] for s in st.values())
        seen = []
        for lo in range(1, h + 1, 50):
            blocks = call(m["nodes"][0]["rpc"], "blockchain",
                          {"min_height": lo, "max_height": min(h, lo + 49)})
            blocks = blocks["blocks"] if isinstance(blocks, dict) else blocks
            for blk in blocks:
                seen.extend(blk["tx_hashes"])
        return h if want <= set(seen) else None

    h = wait_until(committed_everywhere, 180, "all 1000 txs committed on every node")
    chains = {}
    for i in range(4):
        hashes, txs = [], []
        for lo in range(1, h + 1, 50):
            blocks = call(m["nodes"][i]["rpc"], "blockchain",
                          {"min_height": lo, "max_height": min(h, lo + 49)})
            blocks = blocks["blocks"] if isinstance(blocks, dict) else blocks
            for blk in sorted(blocks, key=lambda b: b["height"]):
                hashes.append(blk["hash"])
                txs.extend(blk["tx_hashes"])
        ours = [t for t in txs if t in want]
        assert len(ours) == 1000 and set(ours) == want, f"node {i}: exactly once violated"
        chains[i] = hashes
    assert len({tuple(c) for c in chains.values()}) == 1, "nodes disagree on block hashes"


def test_hard_killed_primary_under_load_commits_resume_within_5s(testnet):
    d, m = testnet
    st = statuses(m, range(4))
    primary, view0 = st[0]["primary"], st[0]["view"]
    others = [i for i in range(4) if i != primary]
    stop = threading.Event()

    def load():  # bounded: at most 400 txs, stops when told
        for k in range(400):
            if stop.is_set():
                return
            url = m["nodes"][others[k % 3]]["rpc"]
            try:
                httpx.post(url, json={"jsonrpc": "2.0", "id": k, "method": "broadcast_tx_async",
                                      "params": {"tx": _b64(_signed(m, b"load", b"%d" % k))}},
                           timeout=2)
            except httpx.HTTPError:
                pass
            time.sleep(0.02)  # offered rate ~50 tx/s, not a wait for a condition

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        wait_until(lambda: statuses(m, [others[0]])[others[0]]["height"] > st[0]["height"] + 2,
                   20, "load committing before the fault")
        launcher.kill(d, primary, hard=True)
        t_kill = time.monotonic()
        h_kill = max(s["height"] for s in statuses(m, others).values())

        def resumed():
            s = statuses(m, others)
            return all(x["view"] > view0 for x in s.values()) and max(
                x["height"] for x in s.values()) > h_kill + 1

        wait_until(resumed, 30, "a new view committing blocks")
        elapsed = time.monotonic() - t_kill
        print(f"\nprimary {primary} SIGKILLed under load: commits resumed in a new view "
              f"after {elapsed:.2f}s (default timeouts)")
        assert elapsed < 5.0
    finally:
        stop.set()
        t.join(10)
    launcher.restart(d, primary)
    h = max(s["height"] for s in statuses(m, others).values())
    wait_until(lambda: statuses(m, [primary])[primary]["height"] >= h, 60,
               f"restarted primary {primary} catching up to {h}")


def test_bad_input_gets_clear_errors_and_the_node_keeps_serving(testnet):
    d, m = testnet
    url = m["nodes"][1]["rpc"]

    def err(resp) -> dict:
        body = resp.json()
        assert "error" in body, body
        assert body["error"]["message"], body
        return body["error"]

    assert err(httpx.post(url, content=b"{not json", timeout=10))["code"] == -32700
    assert err(httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "no_such_method"},
                          timeout=10))["code"] == -32601
    assert err(httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "block",
                                     "params": {"height": "tall"}}, timeout=10))["code"] == -32602
    big = httpx.post(url, content=b"[" + b" " * (10 * 1024 * 1024) + b"]", timeout=30)
    assert big.status_code == 413 and err(big)["code"] in (-32600, -32006)
    good = _signed(m, b"sig", b"ok")
    forged = Request(good.client_id, good.request_seq, good.op, good.valid_until,
                     bytes(64))
    e = err(httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_sync",
                                  "params": {"tx": _b64(forged)}}, timeout=10))
    assert e["code"] == -32003 and "signature" in e["message"].lower()
    first = call(url, "broadcast_tx_commit", {"tx": _b64(good), "timeout": 30}, timeout=40)
    again = call(m["nodes"][2]["rpc"], "broadcast_tx_commit", {"tx": _b64(good), "timeout": 30},
                 timeout=40)
    assert (again["height"], again["hash"]) == (first["height"], first["hash"])
    assert call(url, "kv_get", {"key": "sig"})["value"] == "ok"
    assert call(url, "status")["height"] >= first["height"]
