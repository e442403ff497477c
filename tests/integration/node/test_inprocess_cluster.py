"""A 4-validator cluster in one trio run: MemoryTransport between the nodes, real LevelDB in
tmp dirs, the real KV application. Transactions submitted to any node commit on all of them,
in the same blocks."""

from __future__ import annotations

import dataclasses

import trio

from bftnode.api import open_node
from bftnode.app import ops
from bftnode.home import create_local_chain
from network import MemoryNetwork

pytestmark = []


async def _cluster(tmp_path, port_base, nursery, n=4, consensus=None):
    cfgs = create_local_chain(tmp_path, n, base_port=port_base,
                              consensus=consensus or {"heartbeat_ms": 0})
    cfgs = [dataclasses.replace(c, rpc_port=0) for c in cfgs]
    net = MemoryNetwork(n, seed=1)
    nodes = [None] * n
    started = trio.Event()
    count = 0

    async def run(i):
        nonlocal count
        async with open_node(cfgs[i], transport=net.transport(i)) as node:
            nodes[i] = node
            count += 1
            if count == n:
                started.set()
            await trio.sleep_forever()

    for i in range(n):
        nursery.start_soon(run, i)
    await started.wait()
    return nodes, net, cfgs


async def test_txs_submitted_to_any_node_commit_on_all_in_the_same_blocks(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes, _, _ = await _cluster(tmp_path, port_base, nursery)
        with trio.fail_after(60):
            results = []
            for i in range(8):
                node = nodes[i % 4]
                results.append(await node.submit(ops.put(f"k{i}".encode(), f"v{i}".encode())))
            assert all(r["code"] == 0 for r in results)
            top = max(r["height"] for r in results)
            for node in nodes:
                await node.wait_height(top)
        hashes = {tuple(nd.node.store.block(h).hash for h in range(1, top + 1)) for nd in nodes}
        assert len(hashes) == 1, "nodes disagree on the chain"
        for node in nodes:
            got = await node.read("kv_get", {"key": b"k7"})
            assert got["value"] == b"v7"
            st = node.status()
            assert st["height"] >= top and len(st["last_block_hash"]) == 64
        nursery.cancel_scope.cancel()


async def test_concurrent_submissions_all_commit_exactly_once(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes, _, _ = await _cluster(tmp_path, port_base, nursery)
        out: list[dict] = []

        async def put(i):
            out.append(await nodes[i % 4].submit(ops.put(b"same", str(i).encode())))

        with trio.fail_after(60):
            async with trio.open_nursery() as inner:
                for i in range(40):
                    inner.start_soon(put, i)
        assert len(out) == 40 and len({r["hash"] for r in out}) == 40
        top = max(r["height"] for r in out)
        with trio.fail_after(30):
            for nd in nodes:
                await nd.wait_height(top)
        txs = [t for h in range(1, top + 1) for t in nodes[0].node.store.block(h).txs]
        assert len(txs) == len({(t.client_id, t.request_seq) for t in txs}) == 40
        nursery.cancel_scope.cancel()


async def test_malformed_peer_bytes_are_dropped_counted_and_reported(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes, net, _ = await _cluster(tmp_path, port_base, nursery)
        for junk in (b"\x00", b"\x07garbage", b"\x01\xff\xff", b"\x01" + bytes(100)):
            await net.transport(3).send(0, junk)
        m = nodes[0].node.metrics
        with trio.fail_after(20):
            while m.value("bftnode_rejected_inputs_total", {"reason": "undecodable"}) < 4:
                await trio.sleep(0.01)
            res = await nodes[1].submit(ops.put(b"still", b"alive"))
        assert res["code"] == 0
        assert net.transport(0).peer_stats()[3]["invalid"] >= 4  # report_invalid reached it
        text = nodes[0].node.metrics_text().decode()
        assert "bftnode_height" in text and 'reason="undecodable"' in text
        nursery.cancel_scope.cancel()


async def test_byzantine_strategies_wrap_the_replica(tmp_path, port_base):
    cfgs = create_local_chain(tmp_path, 4, base_port=port_base, consensus={"heartbeat_ms": 0})
    strategies = {3: ["flood"], 2: ["silent"]}
    net = MemoryNetwork(4, seed=2)
    async with trio.open_nursery() as nursery:
        nodes = []
        for c in cfgs:
            node = await nursery.start(_run_node, dataclasses.replace(c, rpc_port=0),
                                       net.transport(c.node_index),
                                       _byzantine_factory(strategies.get(c.node_index, [])))
            nodes.append(node)
        assert type(nodes[3].node.replica).__name__ == "ByzantineReplica"
        with trio.fail_after(60):
            res = await nodes[0].submit(ops.put(b"byz", b"ok"))
            await nodes[1].wait_height(res["height"])
        assert res["code"] == 0
        # the honest nodes drop the flood's garbage and count it
        m = nodes[0].node.metrics
        with trio.fail_after(20):
            while m.value("bftnode_rejected_inputs_total", {"reason": "undecodable"}) == 0:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def _byzantine_factory(specs):
    """A replica_factory wrapping the honest replica in the named strategies (None: honest)."""
    if not specs:
        return None
    from consensus import Replica, byzantine

    def factory(config, index, auth, restored):
        strats = [byzantine.parse_strategy(s) for s in specs]
        return byzantine.ByzantineReplica(Replica(config, index, auth, restored), strats, auth,
                                          replica_id=index, config=config)

    return factory


async def _run_node(cfg, transport, replica_factory=None, task_status=trio.TASK_STATUS_IGNORED):
    async with open_node(cfg, transport=transport, replica_factory=replica_factory) as node:
        task_status.started(node)
        await trio.sleep_forever()


async def test_a_trace_id_from_the_caller_reaches_the_commit_log_line(tmp_path, port_base):
    import io
    import json

    import structlog

    from bftnode.logging import configure_logging, trace_context

    buf = io.StringIO()
    configure_logging("info", stream=buf)
    try:
        async with trio.open_nursery() as nursery:
            nodes, _, _ = await _cluster(tmp_path, port_base, nursery)
            with trio.fail_after(30), trace_context("trace-42"):
                res = await nodes[1].submit(ops.put(b"traced", b"1"))
            nursery.cancel_scope.cancel()
    finally:
        structlog.reset_defaults()
    lines = [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith("{")]
    committed = [x for x in lines if x.get("event") == "tx committed"]
    assert any(x["trace_id"] == "trace-42" and x["node"] == 1 and x["height"] == res["height"]
               for x in committed), committed
    assert nodes[1].node.metrics.value("bftnode_height") >= res["height"]


async def test_under_load_time_keeps_moving_and_every_tx_commits(tmp_path, port_base):
    """Regression: with a never-empty inbox the replica task used to stop ticking, so the
    primary proposed stale block times and backups rejected them as clock skew."""
    async with trio.open_nursery() as nursery:
        nodes, _, _ = await _cluster(tmp_path, port_base, nursery)
        done = []

        async def put(i):
            done.append(await nodes[i % 4].submit(ops.put(b"load%d" % i, b"v")))

        with trio.fail_after(90):
            async with trio.open_nursery() as inner:
                for i in range(120):
                    inner.start_soon(put, i)
        assert len(done) == 120 and all(r["code"] == 0 for r in done)
        import time

        top = max(r["height"] for r in done)
        with trio.fail_after(30):
            await nodes[0].wait_height(top)
        store = nodes[0].node.store
        times = [store.block(h).time_ms for h in range(1, top + 1)]
        assert times == sorted(times) and len(set(times)) == len(times)
        # agreed block time tracks the wall clock: the primary's clock did not fall behind
        assert abs(time.time() * 1000 - times[-1]) < 5_000
        nursery.cancel_scope.cancel()


async def test_a_client_table_smaller_than_the_clients_keeps_exactly_once(tmp_path, port_base):
    """Genesis max_clients=2 with 6 clients: nodes evict clients and load them back from
    LevelDB (LoadClients); every replay is answered with the stored result, none re-executes."""
    from consensus import Ed25519Signer, Request, sign_request

    async with trio.open_nursery() as nursery:
        nodes, _, _ = await _cluster(tmp_path, port_base, nursery,
                                     consensus={"heartbeat_ms": 0, "max_clients": 2})
        domain = nodes[0].node.domain
        signers = [Ed25519Signer.from_seed_int(500 + c, b"client") for c in range(6)]
        reqs = [sign_request(domain, signers[c], Request(b"", s, ops.put(b"k%d" % c, b"v%d" % s)))
                for s in (1, 2) for c in range(6)]
        with trio.fail_after(60):
            first = [await nodes[i % 4].node.submit_and_wait(r) for i, r in enumerate(reqs)]
            again = [await nodes[(i + 1) % 4].node.submit_and_wait(r) for i, r in enumerate(reqs)]
        assert [(t.height, t.index) for t in again] == [(t.height, t.index) for t in first]
        top = max(t.height for t in first)
        with trio.fail_after(30):
            for nd in nodes:
                await nd.wait_height(top)
        txs = [t for h in range(1, nodes[0].node.height() + 1)
               for t in nodes[0].node.store.block(h).txs]
        assert len(txs) == len({(t.client_id, t.request_seq) for t in txs}) == 12
        for nd in nodes:
            nd.node._update_gauges()
            m = nd.node.metrics
            assert m.value("bftnode_client_table", {"what": "size"}) <= 2 + 1
            assert m.value("bftnode_client_table", {"what": "evictions"}) > 0
        assert sum(nd.node.metrics.value("bftnode_client_table", {"what": "loads"})
                   for nd in nodes) > 0
        nursery.cancel_scope.cancel()
