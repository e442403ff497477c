"""The certificate a proof is built on is of a block the answering node has executed: a
certificate can form from 2f+1 other validators' votes before this node executes the block,
and its state tree has no version for it yet (the proof would fail with StaleVersion)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from bftnode.rpc import proofs as pf
from bftnode.rpc.errors import RPCError


class _Node:
    def __init__(self, height: int, certified: list[int]) -> None:
        self.h = height
        self.certs = {s: SimpleNamespace(seq=s) for s in certified}

    def height(self) -> int:
        return self.h

    def state_certificate(self, height: int | None = None):
        if height is None:
            return self.certs[max(self.certs)] if self.certs else None
        return self.certs.get(height)


def test_a_certificate_above_our_height_gives_way_to_the_one_of_our_height():
    node = _Node(5, [4, 5, 7])
    assert trio.run(pf.certified, node).seq == 5


def test_an_asked_height_we_have_not_executed_waits_then_answers_stale_read():
    node = _Node(5, [5, 7])

    async def ask():
        return await pf.certified(node, 7, wait_s=0.1)

    with pytest.raises(RPCError) as err:
        trio.run(ask)
    assert "stale read" in str(err.value)


def test_the_certificate_is_served_once_we_executed_its_block():
    node = _Node(5, [5, 7])

    async def run():
        async with trio.open_nursery() as n:
            async def catch_up():
                await trio.sleep(0.05)
                node.h = 7
            n.start_soon(catch_up)
            return (await pf.certified(node, 7, wait_s=2)).seq

    assert trio.run(run) == 7
