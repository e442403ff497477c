"""Client watches against the real RPC server (fake nodes with one shared history): a watch
fails over when its node goes away and sees every event once, in order (a revision with two
events included); every node having pruned the events raises WatchGap; `observe` yields the
leader now, then each change of that election only."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bftnode.client import AsyncClient, WatchGap
from bftnode.rpc.server import serve_rpc

from .conftest import TxFactory
from .fake_node import FakeNode


class Chain:
    """Fake nodes fed the same txs, so they hold the same blocks and events."""

    def __init__(self, nodes: list[FakeNode]) -> None:
        self.nodes = nodes
        self.txs = TxFactory(nodes[0].domain)

    def block(self, *keys: str, extra: dict[str, Any] | None = None) -> int:
        reqs = [self.txs.request(_put(k)) for k in keys]
        for n in self.nodes:
            n.pending.extend(reqs)
            h = n.commit_pending()
            if extra is not None:  # one more event: at the block's last revision
                n.events[h].append({**extra, "revision": n.revision})
        return h


def _put(key: str) -> bytes:
    from bftnode.app import ops

    return ops.put(key.encode(), b"v-" + key.encode())


async def _serve(node: FakeNode, scope: trio.CancelScope, *, task_status) -> None:
    with scope:
        await serve_rpc(node, "127.0.0.1", 0, task_status=task_status)


async def _wait_len(out: list, n: int) -> None:
    with trio.fail_after(10):
        while len(out) < n:
            await trio.sleep(0.01)


async def test_a_watch_fails_over_and_sees_every_event_once_in_order(nursery, tmp_path):
    a, b = FakeNode(auto_commit=False), FakeNode(auto_commit=False)
    chain = Chain([a, b])
    scope_a = trio.CancelScope()
    url_a = await nursery.start(_serve, a, scope_a)
    url_b = await nursery.start(_serve, b, trio.CancelScope())
    got: list[dict] = []

    async with AsyncClient([url_a, url_b], tmp_path / "c.key") as c:
        async def consume(task_status=trio.TASK_STATUS_IGNORED) -> None:
            async with c.watch("k", from_height=1) as events:
                task_status.started()
                async for ev in events:
                    got.append(ev)

        chain.block("k1", "k2")
        chain.block("k3", extra={"type": "put", "key": b"k3b", "value": b"x"})
        await nursery.start(consume)
        await _wait_len(got, 4)
        scope_a.cancel()  # node a goes away mid-watch
        chain.block("k4")
        chain.block("k5", extra={"type": "put", "key": b"k5b", "value": b"x"})
        chain.block("other")
        chain.block("k6")
        await _wait_len(got, 8)
        await trio.sleep(0.2)  # nothing more may come
        nursery.cancel_scope.cancel()
    assert [(e["key"], e["revision"]) for e in got] == [
        ("k1", 1), ("k2", 2), ("k3", 3), ("k3b", 3), ("k4", 4), ("k5", 5), ("k5b", 5),
        ("k6", 7)]


async def test_a_watch_whose_events_every_node_pruned_raises_watch_gap(nursery, tmp_path):
    node = FakeNode(auto_commit=False)
    chain = Chain([node])
    chain.block("k1")
    chain.block("k2")
    node.forget_events_below = 1  # block 1's events are gone
    url = await nursery.start(serve_rpc, node, "127.0.0.1", 0)
    async with AsyncClient(url, tmp_path / "c.key") as c, c.watch("k", from_height=1) as evs:
        with trio.fail_after(10), pytest.raises(WatchGap, match="pruned"):
            async for _ in evs:
                pass


class ElectionNode(FakeNode):
    async def query(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "election_leader":
            return {"name": params["name"], "leader": b"n0", "has_leader": True, "token": 1,
                    "lease": 9, "owner": b"", "candidates": 0, "revision": self.revision,
                    "height": self.height()}
        return await super().query(method, params)


async def test_observe_yields_the_leader_now_then_each_change_of_that_election(nursery,
                                                                               tmp_path):
    node = ElectionNode(auto_commit=False)
    chain = Chain([node])
    chain.block("k1")
    url = await nursery.start(serve_rpc, node, "127.0.0.1", 0)

    def change(name: bytes, value: bytes | None) -> dict[str, Any]:
        return {"kind": "leader_changed", "key": name, "value": value, "scope": "election",
                "lease": 9, "token": 2}

    seen: list[dict] = []
    async with AsyncClient(url, tmp_path / "c.key") as c, c.observe("jobs") as changes:
        async for ch in changes:
            seen.append(ch)
            if len(seen) == 1:
                chain.block("k2", extra=change(b"other", b"x"))
                chain.block("k3", extra=change(b"jobs", b"n1"))
                chain.block("k4", extra=change(b"jobs", None))
            if len(seen) == 3:
                break
    assert [(s["name"], s["leader"], s["revision"]) for s in seen] == [
        ("jobs", "n0", 1), ("jobs", "n1", 3), ("jobs", None, 4)]
