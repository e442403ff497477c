"""The blocking (`SyncNode`) and asyncio (`AsyncioNode`) facades run a real validator of a
real libp2p testnet (the other three validators are `bftnode start` processes)."""

from __future__ import annotations

import asyncio

import pytest

from bftnode.api import AsyncioNode, SyncNode
from bftnode.app import ops
from testnet import launcher

from .conftest import free_port_base

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def three_processes(tmp_path_factory):
    d = tmp_path_factory.mktemp("tn")
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), consensus={"heartbeat_ms": 300})
    launcher.kill(d, 3)  # validator 3 will run inside this test process instead
    try:
        yield m
    finally:
        launcher.down(d)


def test_sync_node_submits_and_reads(three_processes):
    home = three_processes["nodes"][3]["home"]
    with SyncNode(home) as node:
        res = node.submit(ops.put(b"sync", b"yes"), timeout=60)
        assert res["code"] == 0 and res["result"]["revision"] >= 1
        assert node.wait_height(res["height"], 30) >= res["height"]
        assert node.read("kv_get", {"key": b"sync"})["value"] == b"yes"
        assert node.status()["validator_index"] == 3


def test_asyncio_node_submits_and_reads(three_processes):
    home = three_processes["nodes"][3]["home"]

    async def main():
        node = await AsyncioNode.start(home)
        try:
            res = await asyncio.wait_for(node.submit(ops.put(b"aio", b"yes")), 60)
            assert res["code"] == 0
            got = await node.read("kv_get", {"key": b"aio"})
            assert got["value"] == b"yes"
            assert node.status()["height"] >= res["height"]
        finally:
            await node.close()

    asyncio.run(main())
