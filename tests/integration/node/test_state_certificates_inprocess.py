"""State certificates on an in-process 4-node cluster (MemoryTransport, real LevelDB with the
state tree, the real replica and app): each node stores a certificate for every block
(`Node.state_certificate`); a node whose store computes other roots raises the divergence
alarm (error log, metric, `evidence`) while the others keep certifying."""

from __future__ import annotations

import dataclasses

import trio

from bftnode.api import open_node
from bftnode.app import ops
from bftnode.home import create_local_chain
from network import MemoryNetwork


async def _run(cfg, transport, task_status=trio.TASK_STATUS_IGNORED):
    async with open_node(cfg, transport=transport) as node:
        task_status.started(node)
        await trio.sleep_forever()


async def _cluster(tmp_path, port_base, nursery, auth=(True, True, True, True)):
    cfgs = create_local_chain(tmp_path, 4, base_port=port_base,
                              consensus={"heartbeat_ms": 0})
    net = MemoryNetwork(4, seed=3)
    return [await nursery.start(_run, dataclasses.replace(
        c, rpc_port=0, authenticated_state=auth[c.node_index]), net.transport(c.node_index))
        for c in cfgs]


async def _wait_certified(node, height: int) -> None:
    while node.state_certificate() is None or node.state_certificate().seq < height:
        await trio.sleep(0.01)


async def test_every_node_stores_a_certificate_for_every_block(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes = await _cluster(tmp_path, port_base, nursery)
        with trio.fail_after(60):
            top = max([(await nodes[i % 4].submit(ops.put(b"k%d" % i, b"v")))["height"]
                       for i in range(6)])
            for h in nodes:
                await _wait_certified(h.node, top)
        for h in nodes:
            node = h.node
            assert node.consensus_config.state_votes
            for height in range(1, top + 1):
                cert = node.state_certificate(height)
                assert cert is not None, (node.index, height)
                assert (cert.state_root, cert.results_root) == node.store.block_roots(height)
                assert len(cert.votes) == 3 and all(node.auth.verify(v) for v in cert.votes)
            assert node.metrics.value("bftnode_state_divergences_total") == 0
        nursery.cancel_scope.cancel()


async def test_a_node_outvoted_on_its_roots_raises_the_alarm(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes = await _cluster(tmp_path, port_base, nursery)
        bad = nodes[3].node
        real = bad.store.block_roots
        bad.store.block_roots = lambda h: (b"\x01" * 32, real(h)[1])  # a corrupted tree
        with trio.fail_after(60):
            res = await nodes[0].submit(ops.put(b"k", b"v"))
            for h in nodes[:3]:
                await _wait_certified(h.node, res["height"])
            while bad.metrics.value("bftnode_state_divergences_total") == 0:
                await trio.sleep(0.01)
        assert any(e["kind"] == "state-divergence" for e in bad.evidence())
        for h in nodes[:3]:
            assert h.node.metrics.value("bftnode_state_divergences_total") == 0
        nursery.cancel_scope.cancel()


async def test_state_votes_are_off_without_the_state_tree(tmp_path, port_base):
    async with trio.open_nursery() as nursery:
        nodes = await _cluster(tmp_path, port_base, nursery, auth=(False,) * 4)
        with trio.fail_after(60):
            res = await nodes[0].submit(ops.put(b"k", b"v"))
            await nodes[1].wait_height(res["height"])
        node = nodes[1].node
        assert not node.consensus_config.state_votes and node.state_certificate() is None
        assert node.store.block_roots(res["height"])[0] == bytes(32)
        assert node.store.block(res["height"]).state_certificate is None
        nursery.cancel_scope.cancel()
