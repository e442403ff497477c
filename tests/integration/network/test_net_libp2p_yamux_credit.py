"""Yamux receive credit over real py-libp2p hosts: returned per half window, not per read
(a WINDOW_UPDATE frame per message read was a third of a block's loopback segments), and
messages far larger than the window still flow."""

from __future__ import annotations

import struct

import libp2p.stream_muxer.yamux.yamux as yamux
import pytest
from libp2p_net_helpers import mesh, receive

pytestmark = pytest.mark.integration


def _count_window_updates(monkeypatch) -> list[int]:
    """Patch Yamux._write_frame to record the increment of every credit-returning update."""
    increments: list[int] = []
    original = yamux.Yamux._write_frame

    async def counting(self, data: bytes) -> None:
        if len(data) >= yamux.HEADER_SIZE:
            _, typ, flags, _, length = struct.unpack(
                yamux.YAMUX_HEADER_FORMAT, data[:yamux.HEADER_SIZE])
            if typ == yamux.TYPE_WINDOW_UPDATE and flags == 0 and length > 0:
                increments.append(length)
        await original(self, data)

    monkeypatch.setattr(yamux.Yamux, "_write_frame", counting)
    return increments


async def test_small_messages_read_one_by_one_return_credit_per_half_window(monkeypatch):
    increments = _count_window_updates(monkeypatch)
    async with mesh(2) as (nodes, _, _):
        a, b = (n.transport for n in nodes)
        await a.send(1, b"hello")
        assert await receive(b, 1) == [(0, b"hello")]
        before = len(increments)
        for k in range(200):  # one at a time: every message is its own read on b's side
            await a.send(1, b"m%d" % k + bytes(200))
            assert (await receive(b, 1))[0][1].startswith(b"m%d" % k)
        # ~42 KB read in 200 reads: below half of the 256 KB window, so no credit went back
        # (py-libp2p's own rule sent ~110 updates here)
        assert len(increments) - before <= 2


async def test_messages_larger_than_the_window_still_flow(monkeypatch):
    increments = _count_window_updates(monkeypatch)
    async with mesh(2) as (nodes, _, _):
        a, b = (n.transport for n in nodes)
        big = [bytes([k]) * (700 * 1024) for k in range(6)]  # 4.2 MB through a 256 KB window
        for m in big:
            await a.send(1, m)
        got = await receive(b, len(big), timeout=60)
        assert [p for _, p in got] == big
        assert sum(increments) >= sum(map(len, big)) - yamux.DEFAULT_WINDOW_SIZE
