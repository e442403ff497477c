"""Reads on a real node (4 validators in one trio run, real LevelDB, the real application):
every RPC read runs in a read worker thread over a snapshot, kv_range pages through its
cursor, reads carry read_height / catching_up, the per-IP bucket answers `rate limited`, and
`health` turns not-ok when the node is cut off (no quorum, then a long view change)."""

from __future__ import annotations

import dataclasses
import threading

import trio

from bftnode.api import open_node
from bftnode.app import ops
from bftnode.home import create_local_chain
from bftnode.rpc import errors as E
from bftnode.rpc import methods as m
from network import MemoryNetwork


async def _cluster(tmp_path, port_base, nursery, **config):
    cfgs = create_local_chain(tmp_path, 4, base_port=port_base,
                              consensus={"heartbeat_ms": 0})
    cfgs = [dataclasses.replace(c, rpc_port=0, **config) for c in cfgs]
    net = MemoryNetwork(4, seed=1)
    nodes: list = [None] * 4
    ready = [trio.Event() for _ in range(4)]

    async def run(i):
        async with open_node(cfgs[i], transport=net.transport(i)) as node:
            nodes[i] = node
            ready[i].set()
            await trio.sleep_forever()

    for i in range(4):
        nursery.start_soon(run, i)
    for e in ready:
        await e.wait()
    return nodes, net


async def _call(node, method, peer="10.0.0.1:5", **params):
    ctx = m.CallContext(node=node, peer=peer)
    return await m.dispatch(ctx, {"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": params})


async def test_reads_run_in_workers_page_through_cursors_and_are_rate_limited(
        tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes, _ = await _cluster(tmp_path, port_base, nursery, read_page_limit=40,
                                  read_answer_bytes=131072, read_burst=60, read_rate=1.0)
        node = nodes[0].node
        with trio.fail_after(60):
            async with trio.open_nursery() as puts:
                for j in range(120):
                    puts.start_soon(nodes[j % 4].submit, ops.put(b"r/%04d" % j, b"x" * 50))
            await node.wait_height(max(nd.node.height() for nd in nodes))  # every put, here
        threads = set()
        real_query = node.app.query

        def spy(*a, **kw):
            threads.add(threading.current_thread() is threading.main_thread())
            return real_query(*a, **kw)

        node.app.query = spy
        keys: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"key": "r/", "min_height": node.height()}  # proven at a height >= it
            if cursor is not None:
                params["cursor"] = cursor
            out = await _call(node, "kv_range", **params)
            r = out["result"]
            assert r["read_height"] >= 1 and r["catching_up"] is False
            keys += [kv["key"] for kv in r["kvs"]]
            pages += 1
            cursor = r.get("cursor")
            if not r["more"]:
                break
        assert threads == {False}, "app reads ran on the event loop's thread"
        assert keys == sorted(set(keys)) and len(keys) == 120 and pages >= 3
        blk = await _call(node, "block", height=1)
        assert "result" in blk, blk
        blk = blk["result"]
        assert blk["read_height"] >= 1 and "catching_up" in blk
        stale = (await _call(node, "kv_get", key="r/0001", min_height=10**9))["error"]
        assert stale["code"] == E.STALE_READ and stale["data"]["min_height"] == 10**9
        errors = []
        for _ in range(80):
            out = await _call(node, "kv_get", peer="10.0.0.2:6", key="r/0001")
            if "error" in out:
                errors.append(out["error"])
        assert errors and errors[0]["code"] == E.RATE_LIMITED
        assert errors[0]["data"]["retry_after"] > 0 and "rate limited" in errors[0]["message"]
        other = await _call(node, "kv_get", peer="10.0.0.3:7", key="r/0001")
        assert "result" in other  # another address keeps its own budget
        nursery.cancel_scope.cancel()


async def test_health_is_not_ok_without_quorum_and_in_a_long_view_change(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes, net = await _cluster(tmp_path, port_base, nursery, health_view_change_s=1.0)
        with trio.fail_after(60):
            await nodes[3].submit(ops.put(b"h/1", b"1"))
            node = nodes[3].node
            h = node.health()
            assert h["ok"] and h["reasons"] == [], h
            net.isolate(3)
            h = node.health()
            assert not h["ok"] and h["reasons"] == ["no_quorum"], h

            async def put_cut_off() -> None:  # starts its request timer, then a view change
                with trio.move_on_after(30):
                    await nodes[3].submit(ops.put(b"h/2", b"2"))

            nursery.start_soon(put_cut_off)
            while "view_change" not in node.health()["reasons"]:
                await trio.sleep(0.2)
            h = node.health()
            assert h["in_view_change_s"] > 1.0 and h["reasons"] == ["no_quorum", "view_change"] \
                or h["reasons"] == ["view_change", "no_quorum"], h
            assert any("in a view change for" in w for w in h["why"])
        nursery.cancel_scope.cancel()
