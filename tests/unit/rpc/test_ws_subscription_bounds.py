"""What one WebSocket subscriber can cost the node: a replay from an old height yields to the
other tasks between blocks and is paid for from the client address's read bucket, and a
reader that takes nothing holds at most the connection's queue byte budget."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from bftnode.rpc import methods as m
from bftnode.rpc import read_guard
from bftnode.rpc.limits import ReadLimits
from bftnode.rpc.metrics import RPCMetrics
from bftnode.rpc.websocket import WSConnection

from .fake_node import FakeNode

PEER = "10.9.8.7:4000"


class LongChain(FakeNode):
    """A chain of `n` cheap blocks, each with the app events `events(h)`; counts block reads."""

    def __init__(self, n: int, limits: ReadLimits | None = None,
                 event_value: bytes = b"v") -> None:
        super().__init__()
        self.n = n
        self.reads = 0
        self.event_value = event_value
        if limits is not None:
            self.read_limits = limits

    def height(self) -> int:
        return self.n

    def block(self, height: int) -> Any:
        if not 1 <= height <= self.n:
            return None
        self.reads += 1
        return SimpleNamespace(height=height, txs=())

    def app_events(self, height: int) -> list[dict[str, Any]] | None:
        return [{"type": "put", "key": b"app/k", "value": self.event_value,
                 "revision": height}]


class FakeWS:
    """The server side of a WebSocket; sends block until `taking` is set."""

    def __init__(self) -> None:
        self.inbox, self._inbox = trio.open_memory_channel[dict](128)
        self.taking = trio.Event()
        self.sent: list[dict] = []

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict:
        return await self._inbox.receive()

    async def send_text(self, text: str) -> None:
        await self.taking.wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass

    async def call(self, method: str, **params: Any) -> None:
        await self.inbox.send({"type": "websocket.receive", "text": json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})})


def connection(node: FakeNode, ws: FakeWS, **kw: Any) -> WSConnection:
    ctx = m.CallContext(node=node, peer=PEER, transport="websocket")
    return WSConnection(node, ws, ctx, RPCMetrics(), **kw)  # type: ignore[arg-type]


async def test_a_replay_from_height_1_lets_other_tasks_run_between_blocks(nursery):
    node = LongChain(20_000, ReadLimits(rate=1e9, burst=10**9))
    ws = FakeWS()
    ws.taking.set()
    nursery.start_soon(connection(node, ws).run)
    await ws.call("subscribe", topic="kv", prefix="nothing/", from_height=1)
    most = 0
    with trio.fail_after(30):
        while node.reads < node.n:
            before = node.reads
            await trio.sleep(0)
            most = max(most, node.reads - before)
    assert most <= 2  # blocks read while this task waited for one turn of the loop


async def test_a_replay_is_paid_for_from_the_client_address_read_bucket(nursery):
    now = [0.0]
    node = LongChain(1_000, ReadLimits(rate=100.0, burst=50))
    read_guard._gates[node] = read_guard.ReadGate(node.read_limits, clock=lambda: now[0])
    ws = FakeWS()
    ws.taking.set()
    nursery.start_soon(connection(node, ws).run)
    await ws.call("subscribe", topic="kv", prefix="nothing/", from_height=1)
    with trio.fail_after(10):
        while node.reads < 50:
            await trio.sleep(0.01)
    await trio.sleep(0.2)  # the bucket is empty and the clock stands still: no more reads
    assert node.reads <= 51
    now[0] += 1.0  # a refill, up to the burst: 50 more blocks
    with trio.fail_after(10):
        while node.reads < 100:
            await trio.sleep(0.01)
    await trio.sleep(0.2)
    assert node.reads <= 101
    # the same address's plain reads are refused while its replay has the bucket empty
    assert read_guard.gate(node).refusal(read_guard.client_ip(PEER)) is not None


async def test_a_reader_that_takes_nothing_holds_at_most_the_queue_byte_budget(nursery):
    node = LongChain(1_000, event_value=b"x" * 100_000)  # ~100 KB per notification
    ws = FakeWS()  # not taking anything
    conn = connection(node, ws, queue_bytes=1_000_000, overflow_grace=0.2)
    nursery.start_soon(conn.run)
    await ws.call("subscribe", topic="kv", prefix="app/", from_height=1)
    with trio.fail_after(10):
        while not conn.metrics.value("bftnode_rpc_subscription_overflows_total"):
            assert conn.queued <= 1_000_000 + 200_000
            await trio.sleep(0.01)
    ws.taking.set()
    with trio.fail_after(10):
        while not any(x.get("method") == "subscription_closed" for x in ws.sent):
            await trio.sleep(0.01)
    closed = next(x for x in ws.sent if x.get("method") == "subscription_closed")["params"]
    assert "slow reader" in closed["reason"]
    assert closed["resume_from_height"] <= 12  # ~1 MB of 100 KB messages, not 256 of them
    heights = [x["params"]["height"] for x in ws.sent if x.get("method") == "subscription"]
    assert heights == list(range(1, closed["resume_from_height"]))


class BigStatus(FakeNode):
    def status(self) -> dict[str, Any]:
        return {**super().status(), "pad": "x" * 100_000}


async def test_a_client_that_sends_calls_and_reads_no_answer_is_disconnected():
    ws = FakeWS()  # not taking anything
    conn = connection(BigStatus(), ws, queue_bytes=1_000_000)
    most = 0
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.run)
            for _ in range(60):  # ~6 MB of answers
                await ws.call("status")
            while not conn.metrics.value("bftnode_rpc_timeouts_total", {"phase": "ws_unread"}):
                most = max(most, conn.queued + conn.waiting)
                await trio.sleep(0)
    # run() returned: the connection is closed, and it never held much over two budgets
    assert most <= 2_000_000 + 200_000
