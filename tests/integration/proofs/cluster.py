"""A 4-validator chain in one trio run with authenticated state on and each node's RPC on a
real port; each node certifies its roots through testnet.cert_shim (TEMPORARY, until the
validators' StateVotes land: then the nodes certify by themselves and the shim goes)."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bftnode.api import open_node
from bftnode.home import create_local_chain
from network import MemoryNetwork
from testnet import cert_shim


@asynccontextmanager
async def proven_cluster(tmp_path: Path, port_base: int, n: int = 4):
    cfgs = create_local_chain(tmp_path, n, base_port=port_base)
    cfgs = [dataclasses.replace(c, authenticated_state=True) for c in cfgs]
    keys = cert_shim.local_keys(tmp_path / "node0")
    assert keys is not None
    net = MemoryNetwork(n, seed=1)
    nodes: list[Any] = [None] * n
    started = trio.Event()

    async def run(i: int) -> None:
        async with open_node(cfgs[i], transport=net.transport(i)) as node:
            cert_shim.install(node.node, keys)
            nodes[i] = node
            if all(x is not None for x in nodes):
                started.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(run, i)
        with trio.fail_after(30):
            await started.wait()
            for nd in nodes:
                while nd.node.rpc_url is None:
                    await trio.sleep(0.01)
        yield nodes, tmp_path / "node0" / "genesis.json"
        nursery.cancel_scope.cancel()
