"""CometBFT's routes on a real 4-process testnet (bftnode.rpc.comet; docs/rpc.md "CometBFT
routes"): each answers over POST (named and positional params) and over GET as curl sends it,
and the answers agree with bftnode's own methods and across nodes. And a trace id sent with a
tx shows up in every node's log (bftnode.node.traces)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bftnode.app import ops
from bftnode.client import Client
from bftnode.client import core as C
from testnet.ports import free_port_base
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration
_LOGS: list[Path] = []  # the module testnet's node logs
_OTLP: list[OtlpReceiver] = []  # where the module testnet's nodes export spans


@pytest.fixture(scope="module")
def urls(tmp_path_factory) -> list[str]:
    from testnet import launcher

    d = tmp_path_factory.mktemp("comet-testnet")
    with OtlpReceiver() as rx:
        _OTLP[:] = [rx]
        # the nodes export traced txs to this receiver (bftnode.node.otel), every 0.1 s
        with _env({"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}):
            # info: the trace test reads each node's `tx committed` lines
            m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8),
                            log_level="info")
        _LOGS[:] = [Path(n["log"]) for n in m["nodes"]]
        try:
            yield [n["rpc"] for n in m["nodes"]]
        finally:
            launcher.down(d)


@contextlib.contextmanager
def _env(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _post(url: str, method: str, params) -> dict:
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                   timeout=10)
    out = r.json()
    assert "result" in out, out
    return out["result"]


def _wait_height(url: str, h: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _post(url, "status", {})["height"] < h:
        assert time.monotonic() < deadline, f"{url} did not reach height {h}"
        time.sleep(0.05)


def test_cometbft_routes_answer_on_every_node(urls, tmp_path):
    with Client(urls, tmp_path / "c.key", verify="none") as c:
        puts = [c.put(f"comet/{i}", f"v{i}") for i in range(3)]
    h = puts[-1]["height"]
    for u in urls:
        _wait_height(u, h)
        header = _post(u, "header", [h])
        assert header["height"] == h and header["hash"] == puts[-1]["block_hash"]
        assert _post(u, "block_by_hash", [header["hash"]])["height"] == h
        found = _post(u, "tx_search", {"query": f"tx.height>={puts[0]['height']} AND "
                                                f"tx.height<={h}"})
        assert {p["hash"] for p in puts} <= {t["hash"] for t in found["txs"]}
        commit = _post(u, "commit", {"height": h})
        assert commit["header"]["hash"] == header["hash"] and len(commit["commit"]["commits"]) >= 3
        results = _post(u, "block_results", [h])
        assert puts[-1]["hash"] in [r["hash"] for r in results["txs_results"]]
        g = _post(u, "genesis", {})["genesis"]
        assert len(g["validators"]) == 4
        info = _post(u, "abci_info", {})["response"]
        assert info["last_block_height"] >= h
        q = _post(u, "abci_query", ["/key", b"comet/2".hex(), h])["response"]
        assert q["code"] == 0 and base64.b64decode(q["value"]) == b"v2"
        st = _post(u, "consensus_state", {})["round_state"]
        # a busy host may be in a view change at that moment: the shape, not the step
        assert st["step"] in ("normal", "view-change") and st["height"] >= h
        assert st["primary"] == st["view"] % 4
        assert _post(u, "num_unconfirmed_txs", {})["total"] >= 0
        assert "txs" in _post(u, "unconfirmed_txs", [5])
        assert len(_post(u, "dump_consensus_state", {})["peers"]) == 3


def test_tx_search_by_event_attributes_answers_from_the_index_on_every_node(urls, tmp_path):
    """kv.key and lease.id find the txs that emitted them, in height order, on every node
    (each indexes its own committed blocks)."""
    with Client(urls, tmp_path / "a.key", verify="none") as c:
        puts = [c.put("comet/attr", f"v{i}") for i in range(3)]
        other = c.put("comet/other", "x")
        lease_id = c.lease_grant(30)
    h = other["height"]
    for u in urls:
        _wait_height(u, h)
        deadline = time.monotonic() + 10
        while (r := _post(u, "tx_search", {"query": "kv.key='comet/attr'"}))["total_count"] < 3:
            assert time.monotonic() < deadline, r
            time.sleep(0.05)
        assert [t["hash"] for t in r["txs"]] == [p["hash"] for p in puts]
        assert r["indexed_height"] >= h and r["blocks_read"] == 0
        r = _post(u, "tx_search", {"query": f"kv.key='comet/attr' AND tx.height>"
                                            f"{puts[0]['height']}", "order_by": "desc"})
        assert [t["hash"] for t in r["txs"]] == [puts[2]["hash"], puts[1]["hash"]]
        assert _post(u, "tx_search", {"query": "kv.key='comet/other'"})["total_count"] == 1
        assert _post(u, "tx_search", {"query": f"lease.id={lease_id}"})["total_count"] >= 1
        assert _post(u, "tx_search", {"query": "kv.key='comet/none'"})["total_count"] == 0


def test_subscribe_with_a_query_notifies_only_the_matching_txs(urls, tmp_path):
    """Topic txs with CometBFT's query: only the txs whose events carry the attribute are
    notified, in order; another tm.event is refused naming it."""
    from httpx_ws import connect_ws

    def call(ws, params: dict) -> dict:
        ws.send_text(json.dumps({"jsonrpc": "2.0", "id": "s", "method": "subscribe",
                                 "params": params}))
        return json.loads(ws.receive_text(timeout=30))

    with httpx.Client(timeout=10) as http, connect_ws("ws" + urls[1][4:] + "/websocket",
                                                      http) as ws:
        r = call(ws, {"topic": "txs", "query": "tm.event='NewBlock'"})
        assert r["error"]["code"] == -32602 and "tm.event" in r["error"]["message"]
        r = call(ws, {"topic": "blocks", "query": "kv.key='x'"})
        assert r["error"]["code"] == -32602 and "topic 'txs'" in r["error"]["message"]
        sid = call(ws, {"topic": "txs", "query": "tm.event='Tx' AND kv.key='comet/sub'"})[
            "result"]["subscription"]
        with Client(urls, tmp_path / "s.key", verify="none") as c:
            c.put("comet/other-sub", "x")
            want = [c.put("comet/sub", "1")]
            c.put("comet/other-sub", "y")
            want.append(c.put("comet/sub", "2"))
        got = [json.loads(ws.receive_text(timeout=30)) for _ in want]
        assert [g["params"]["subscription"] for g in got] == [sid, sid]
        assert [g["params"]["result"]["hash"] for g in got] == [w["hash"] for w in want]


def test_check_tx_does_not_submit_and_get_routes_work_as_curl_sends_them(urls, tmp_path):
    with Client(urls[0], tmp_path / "c.key", verify="none") as c:
        c.put("comet/x", "1")
        req = c.sign(ops.put(b"comet/never", b"1"))  # signed, never submitted
    tx = C.tx_param(req)
    assert _post(urls[0], "check_tx", [tx])["code"] == 0
    r = httpx.get(urls[0] + "/abci_query", params={"path": '"/key"',
                                                   "data": "0x" + b"comet/never".hex()})
    assert r.json()["result"]["response"]["code"] == 1  # checked, never submitted
    curl = shutil.which("curl")
    if curl is None:  # the same request through httpx
        body = httpx.get(urls[1] + "/block?height=1", timeout=10).text
    else:
        body = subprocess.run([curl, "-s", urls[1] + "/block?height=1"], capture_output=True,
                              text=True, timeout=30, check=True).stdout
    assert json.loads(body)["result"]["height"] == 1


def _signed_put(urls, tmp_path, key: bytes) -> str:
    with Client(urls[0], tmp_path / "t.key", verify="none") as c:
        return C.tx_param(c.sign(ops.put(key, b"traced")))


def _lines_with(log: Path, needle: str) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if needle in line:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


@pytest.mark.parametrize("header", ["x-trace-id", "traceparent"])
def test_a_trace_id_reaches_every_nodes_log(urls, tmp_path, header):
    """One put with a trace id (X-Trace-Id, or a W3C traceparent) to node 1: every node logs
    its `tx committed` line for that tx with the id (issue 31 item 3)."""
    tid = "4bf92f3577b34da6a3ce929d0e0e47" + ("36" if header == "traceparent" else "37")
    value = tid if header == "x-trace-id" else f"00-{tid}-00f067aa0ba902b7-01"
    tx = _signed_put(urls, tmp_path, f"trace/{header}".encode())
    r = httpx.post(urls[1], headers={header: value}, timeout=15, json={
        "jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_commit", "params": {"tx": tx}})
    assert "result" in r.json(), r.json()
    logs = _LOGS
    deadline = time.monotonic() + 10
    while True:
        found = [[ln for ln in _lines_with(p, tid) if ln.get("event") == "tx committed"]
                 for p in logs]
        if all(found):
            break
        assert time.monotonic() < deadline, [len(f) for f in found]
        time.sleep(0.1)
    for lines in found:
        assert lines[0]["trace_id"] == tid and lines[0]["height"] == r.json()["result"]["height"]
    # and each node exported its span of the tx into the caller's trace (OTLP)
    deadline = time.monotonic() + 10
    rx = _OTLP[0]
    while len({s["instance"] for s in rx.with_trace(tid)}) < 4:
        assert time.monotonic() < deadline, rx.with_trace(tid)
        time.sleep(0.1)
    assert {s["attrs"]["bftnode.height"] for s in rx.with_trace(tid)} == {
        r.json()["result"]["height"]}
