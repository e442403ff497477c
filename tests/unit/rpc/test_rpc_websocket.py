"""JSON-RPC over WebSocket: pipelined calls, subscriptions that resume from a height, key-prefix
watches, and explicit closing of a subscription whose reader falls behind."""

from __future__ import annotations

import json
from functools import partial

import httpx
import trio
from httpx_ws import aconnect_ws

from bftnode.app import ops
from bftnode.rpc import errors as E
from bftnode.rpc.server import RPCMetrics, serve_rpc


def ws_url(url: str) -> str:
    return "ws" + url[4:] + "/websocket"


async def send(ws, id_, method, **params):
    await ws.send_text(json.dumps({"jsonrpc": "2.0", "id": id_, "method": method,
                                   "params": params}))


async def recv(ws, timeout: float = 5.0) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.receive_text())


async def recv_until(ws, pred, timeout: float = 10.0) -> list[dict]:
    """Messages up to and including the first one matching `pred`."""
    out = []
    with trio.fail_after(timeout):
        while True:
            msg = json.loads(await ws.receive_text())
            out.append(msg)
            if pred(msg):
                return out


async def test_pipelined_tx_submission_gets_every_answer(url, txs):
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        for i in range(50):
            await send(ws, i, "broadcast_tx_commit", tx=txs.put(f"k{i}", "v"))
        answers = [await recv(ws) for _ in range(50)]
    assert sorted(a["id"] for a in answers) == list(range(50))
    assert all(a["result"]["code"] == 0 for a in answers)
    assert len({a["result"]["height"] for a in answers}) == 50


async def test_bad_input_on_the_websocket_gets_errors_and_the_connection_stays(url):
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await ws.send_text("{nope")
        assert (await recv(ws))["error"]["code"] == E.PARSE_ERROR
        await send(ws, 1, "subscribe", topic="weather")
        err = (await recv(ws))["error"]
        assert err["code"] == E.INVALID_PARAMS and "topic" in err["message"]
        await send(ws, 2, "unsubscribe", subscription="s999")
        assert (await recv(ws))["error"]["code"] == E.NOT_FOUND
        await send(ws, 3, "status")
        assert (await recv(ws))["result"]["height"] == 0


async def test_block_subscription_replays_from_height_then_follows_new_blocks(url, node, txs):
    for i in range(3):
        await node.submit(txs.request(ops.put(b"k", str(i).encode())))
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await send(ws, 1, "subscribe", topic="blocks", from_height=2)
        sub = (await recv(ws))["result"]
        assert sub["from_height"] == 2
        got = [await recv(ws) for _ in range(2)]
        assert [m["params"]["height"] for m in got] == [2, 3]
        assert all(m["params"]["subscription"] == sub["subscription"] for m in got)
        await node.submit(txs.request(ops.put(b"k", b"new")))
        assert (await recv(ws))["params"]["result"]["height"] == 4
        await send(ws, 2, "unsubscribe", subscription=sub["subscription"])
        assert (await recv(ws))["result"]["unsubscribed"] == sub["subscription"]
        node.commit_pending()  # no notification after unsubscribe
        await send(ws, 3, "status")
        assert (await recv(ws))["result"]["height"] == 5


async def test_kv_watch_sees_only_keys_under_the_prefix(url, node, txs):
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await send(ws, 1, "subscribe", topic="kv", prefix="app/")
        assert (await recv(ws))["result"]["topic"] == "kv"
        for key in (b"other", b"app/a", b"zzz", b"app/b"):
            await node.submit(txs.request(ops.put(key, b"v")))
        evs = [await recv(ws) for _ in range(2)]
    assert [e["params"]["result"]["key"] for e in evs] == ["app/a", "app/b"]
    assert [e["params"]["result"]["revision"] for e in evs] == [2, 4]


async def test_kv_watch_on_pruned_events_is_closed_with_a_reason(url, node, txs):
    for i in range(3):
        await node.submit(txs.request(ops.put(b"app/x", str(i).encode())))
    node.forget_events_below = 1
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c) as ws:
        await send(ws, 1, "subscribe", topic="kv", prefix="app/", from_height=1)
        await recv(ws)
        closed = await recv(ws)
    assert closed["method"] == "subscription_closed"
    assert "not retained" in closed["params"]["reason"]


async def test_a_slow_subscriber_is_closed_with_a_notice_and_can_resume(nursery, node, txs):
    metrics = RPCMetrics()
    url = await nursery.start(partial(serve_rpc, node, "127.0.0.1", 0, ws_queue=4, ws_overflow_grace=0.3,
                                      metrics=metrics))
    node.auto_commit = False
    value = b"x" * 60_000
    for i in range(300):  # ~25 MB of full blocks: more than socket buffers absorb
        node.pending.append(txs.request(ops.put(b"k", value + str(i).encode())))
        node.commit_pending()
    async with httpx.AsyncClient() as c, aconnect_ws(ws_url(url), c, queue_size=1,
                                                     max_message_size_bytes=1 << 20) as ws:
        await send(ws, 1, "subscribe", topic="blocks", from_height=1, full=True)
        with trio.fail_after(30):
            while not metrics.value("bftnode_rpc_subscription_overflows_total"):
                await trio.sleep(0.05)
        msgs = await recv_until(ws, lambda m: m.get("method") == "subscription_closed", 60)
        closed = msgs[-1]["params"]
        heights = [m["params"]["height"] for m in msgs if m.get("method") == "subscription"]
        # everything before the notice arrived in order; the notice says where to resume
        assert heights == list(range(1, len(heights) + 1))
        assert closed["code"] == E.OVERLOADED and "slow reader" in closed["reason"]
        assert closed["resume_from_height"] == heights[-1] + 1
        await send(ws, 2, "subscribe", topic="blocks", from_height=closed["resume_from_height"])
        msgs = await recv_until(ws, lambda m: m.get("params", {}).get("height") == 300, 60)
        resumed = [m["params"]["height"] for m in msgs if m.get("method") == "subscription"]
        assert resumed[0] == closed["resume_from_height"] and resumed[-1] == 300


async def test_a_client_vanishing_mid_subscription_leaves_the_server_clean(nursery, node, txs):
    metrics = RPCMetrics()
    url = await nursery.start(partial(serve_rpc, node, "127.0.0.1", 0, metrics=metrics))
    async with httpx.AsyncClient() as c:
        async with aconnect_ws(ws_url(url), c) as ws:
            await send(ws, 1, "subscribe", topic="blocks")
            await recv(ws)
            assert metrics.value("bftnode_rpc_subscriptions") == 1
        for i in range(3):  # blocks committed after the client left
            await node.submit(txs.request(ops.put(b"k", str(i).encode())))
        with trio.fail_after(5):
            while metrics.value("bftnode_rpc_ws_connections") or metrics.value(
                "bftnode_rpc_subscriptions"
            ):
                await trio.sleep(0.01)
        r = await c.post(url + "/", json={"jsonrpc": "2.0", "id": 1, "method": "status"})
        assert r.json()["result"]["height"] == 3
