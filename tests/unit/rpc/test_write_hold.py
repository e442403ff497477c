"""Writes refused for load are answered late (issue 30, fair admission): a call whose every tx
the pool refused for its rate, its fullness or the client's quota gets its errors (with
`retry_after`) after WRITE_HOLD_S, so a client that retries at once cannot make the node parse
and verify the same refused txs in a tight loop; a call with any tx accepted, or refused for
another reason, is answered at once."""

from __future__ import annotations

import json

import trio

from bftnode.rpc import errors as E
from bftnode.rpc.handlers import WRITE_HOLD_S
from bftnode.rpc.methods import CallContext, handle_body
from bftnode.rpc.node_api import SubmitResult
from bftnode.rpc.server import serve_rpc
from consensus import request_digest

from .conftest import TxFactory
from .fake_node import FakeNode

QUOTA = "client quota: this client already has 2 requests pending (max_pending); wait"


class LoadedNode(FakeNode):
    """Refuses the txs whose key starts with `refuse/` for `reason`; the rest as FakeNode."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    async def submit(self, request):
        if b"refuse/" in request.op:
            return SubmitResult("rejected", request_digest(request), reason=self.reason)
        return await super().submit(request)

    async def submit_many(self, requests):
        return [await self.submit(r) for r in requests]


def _calls(t: TxFactory, keys: list[str], method: str = "broadcast_tx_sync") -> bytes:
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": method,
                        "params": {"tx": t.put(k, "v")}} for i, k in enumerate(keys)]).encode()


async def test_a_batch_refused_whole_for_load_is_held_with_retry_after():
    for reason in ("rate limited", "pool full", QUOTA):
        node = LoadedNode(reason)
        ctx = CallContext(node)
        got = await handle_body(ctx, _calls(TxFactory(node.domain), ["refuse/1", "refuse/2"]))
        assert ctx.extra["refused_retry_after"] == WRITE_HOLD_S, reason
        for r in got:
            assert r["error"]["data"]["retry_after"] == WRITE_HOLD_S
        want = E.CLIENT_QUOTA if reason == QUOTA else E.TX_REJECTED
        assert {r["error"]["code"] for r in got} == {want}


async def test_a_batch_with_one_tx_accepted_is_not_held():
    node = LoadedNode("rate limited")
    ctx = CallContext(node)
    got = await handle_body(ctx, _calls(TxFactory(node.domain), ["refuse/1", "ok/2"]))
    assert "refused_retry_after" not in ctx.extra
    assert "error" in got[0] and got[1]["result"]["status"] in ("accepted", "committed")


async def test_other_refusals_and_single_calls_follow_the_same_rule():
    bad = LoadedNode("bad op: unknown op")  # not a load reason: a retry will not help
    ctx = CallContext(bad)
    got = await handle_body(ctx, _calls(TxFactory(bad.domain), ["refuse/1"]))
    assert "refused_retry_after" not in ctx.extra and "retry_after" not in got[0]["error"]["data"]
    for method in ("broadcast_tx_sync", "broadcast_tx_commit"):
        node = LoadedNode("rate limited")
        ctx = CallContext(node)
        body = json.loads(_calls(TxFactory(node.domain), ["refuse/1"], method))[0]
        await handle_body(ctx, json.dumps(body).encode())
        assert ctx.extra["refused_retry_after"] == WRITE_HOLD_S, method


class QuotaNode(FakeNode):
    """A node whose every client is at its pending quota."""

    async def submit(self, request):
        raise AssertionError("a tx over its client's quota must not reach the node")

    async def submit_many(self, requests):
        raise AssertionError("a tx over its client's quota must not reach the node")

    def quota_refusal(self, request, ahead=0, own=0):
        return QUOTA


async def test_a_client_at_its_quota_is_refused_before_its_signature_is_checked():
    node = QuotaNode()
    other = TxFactory(b"another chain")  # signatures that would not verify here
    for method in ("broadcast_tx_sync", "broadcast_tx_commit", "broadcast_tx_async"):
        ctx = CallContext(node)
        got = await handle_body(ctx, _calls(other, ["a", "b"], method))
        assert [r["error"]["code"] for r in got] == [E.CLIENT_QUOTA] * 2, method
        assert ctx.extra["refused_retry_after"] == WRITE_HOLD_S
    ctx = CallContext(node)  # the batch path (only broadcast_tx_sync) too, held the same
    got = await handle_body(ctx, _calls(other, ["c"]))
    assert got[0]["error"]["data"]["retry_after"] == WRITE_HOLD_S


class RoomForTwo(LoadedNode):
    """A pool with room for two more txs: the pre-check counts the call's txs ahead."""

    def __init__(self) -> None:
        super().__init__("pool full")
        self.asked: list[tuple[int, int]] = []
        self.reached: list[bytes] = []

    def quota_refusal(self, request, ahead=0, own=0):
        self.asked.append((ahead, own))
        return QUOTA if ahead >= 2 else None

    async def submit_many(self, requests):
        self.reached += [r.op for r in requests]
        return await super().submit_many(requests)


async def test_a_batch_has_only_what_the_pool_can_take_verified():
    node = RoomForTwo()
    t = TxFactory(node.domain)
    ctx = CallContext(node)
    got = await handle_body(ctx, _calls(t, ["a/1", "a/2", "a/3", "a/4"]))
    assert node.asked == [(0, 0), (1, 1), (2, 2), (2, 2)]  # one client: all its own
    assert len(node.reached) == 2  # the other two were refused before their signatures
    assert [("error" in r) for r in got] == [False, False, True, True]
    assert got[2]["error"]["code"] == E.CLIENT_QUOTA


async def test_the_http_answer_waits_the_hold_over_post_and_get(nursery):
    import httpx

    node = LoadedNode("pool full")
    url = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
    t = TxFactory(node.domain)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        took = {}
        for name, call in (
            ("post", lambda: http.post("/", content=_calls(t, ["refuse/1", "refuse/2"]))),
            ("get", lambda: http.get("/broadcast_tx_sync", params={"tx": t.put("refuse/3", "v")})),
            ("ok", lambda: http.post("/", content=_calls(t, ["fine/1"]))),
        ):
            t0 = trio.current_time()
            r = await call()
            took[name] = (trio.current_time() - t0, r.json())
    posted, got, ok = took["post"][1], took["get"][1], took["ok"][1]
    assert all("error" in a for a in posted)
    assert got["error"]["data"]["retry_after"] == WRITE_HOLD_S  # GET is held like POST
    assert took["post"][0] >= WRITE_HOLD_S and took["get"][0] >= WRITE_HOLD_S
    assert ok[0]["result"]["status"] in ("accepted", "committed")
    assert took["ok"][0] < WRITE_HOLD_S
