"""The node's `rpc_*` settings reach its RPC server: an embedded node configured with two
connections per address refuses the third from that address (503) and serves another one."""

from __future__ import annotations

import dataclasses

import trio

from bftnode.api import open_node
from bftnode.home import create_local_chain
from network import MemoryNetwork
from tests.unit.rpc.slow_clients import connect, trickle


async def test_rpc_connection_caps_come_from_the_node_config(tmp_path, port_base):
    cfg = create_local_chain(tmp_path, 4, base_port=port_base)[0]
    cfg = dataclasses.replace(cfg, rpc_port=port_base + 15, rpc_header_timeout_s=30.0,
                              rpc_max_connections_per_address=2)
    net = MemoryNetwork(4, seed=1)  # the node's peers stay silent: RPC only
    with trio.fail_after(60):
        async with open_node(cfg, transport=net.transport(0)) as node:
            port = int(node.node.rpc_url.rsplit(":", 1)[1])
            held = [await connect(port, "127.0.0.2") for _ in range(2)]
            await trio.sleep(0)  # let the server accept them before the third one
            out = await trickle(await connect(port, "127.0.0.2"), b"", 0.05, limit=5)
            assert out.status == 503 and b"per address" in out.received
            other = await trickle(await connect(port, "127.0.0.3"),
                                  b"", 0.05, limit=1,
                                  prefix=b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n")
            assert other.status == 200
            for s in held:
                await s.aclose()
