"""The shortcuts of network.libp2p_patches on py-libp2p's hot paths keep the stream semantics:
the raw TCP read-ahead hands bytes out in stream order (also to concurrent readers) and maps
errors as py-libp2p does; the lean Yamux write still goes through the window (the mesh tests
cover delivery end to end)."""

from __future__ import annotations

import os

import libp2p.stream_muxer.yamux.yamux as yamux
import pytest
import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.io.trio import TrioTCPStream

import network.libp2p_patches as transport

pytestmark = pytest.mark.skipif(os.environ.get("BFTNODE_LIBP2P_STOCK") == "1",
                                reason="the shortcuts are switched off by BFTNODE_LIBP2P_STOCK")


def _pair() -> tuple[TrioTCPStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return TrioTCPStream(trio.SocketStream(a)), trio.SocketStream(b)


def test_patches_are_installed_and_idempotent() -> None:
    assert getattr(TrioTCPStream.read, "_bftnode_buffered", False)
    assert getattr(yamux.YamuxStream.write, "_bftnode_lean", False)
    assert transport._buffered_tcp_reads() and transport._lean_yamux_writes()


async def test_exact_reads_are_served_from_one_receive_in_order() -> None:
    reader, writer = _pair()
    payload = bytes(range(256)) * 40
    await writer.send_all(payload)
    await trio.testing.wait_all_tasks_blocked()
    got = bytearray()
    receives = 0
    orig = reader.stream.receive_some

    async def counting(n):
        nonlocal receives
        receives += 1
        return await orig(n)

    reader.stream.receive_some = counting
    for n in (2, 1, 100, 3000, 7, len(payload) - 3110):
        chunk = await reader.read(n)
        assert len(chunk) == n
        got += chunk
    assert bytes(got) == payload
    assert receives == 1  # 10 KB arrived before the first read: one socket receive


async def test_read_without_size_returns_what_is_there_and_eof_is_empty() -> None:
    reader, writer = _pair()
    await writer.send_all(b"hello world")
    assert await reader.read(5) == b"hello"
    assert await reader.read() == b" world"  # the buffered rest, no socket read
    await writer.aclose()
    assert await reader.read(10) == b""


async def test_concurrent_readers_receive_the_stream_in_order() -> None:
    reader, writer = _pair()
    payload = bytes(i % 251 for i in range(20_000))
    taken: list[bytes] = []

    async def consume(size: int) -> None:
        while sum(map(len, taken)) < len(payload):
            chunk = await reader.read(size)
            if not chunk:
                return
            taken.append(chunk)  # appended in the order the reads completed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, 7)
        nursery.start_soon(consume, 1000)
        for k in range(0, len(payload), 3000):
            await writer.send_all(payload[k:k + 3000])
            await trio.sleep(0.001)
        with trio.fail_after(10):
            while sum(map(len, taken)) < len(payload):
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    assert b"".join(taken) == payload


async def test_reset_by_peer_is_a_connection_closed_error() -> None:
    reader, writer = _pair()
    writer.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close -> RST
    await reader.stream.send_all(b"unread")  # unread data on the peer also forces a RST
    writer.socket.close()
    with pytest.raises(ConnectionClosedError):
        for _ in range(3):
            await reader.read(10)


async def test_read_after_local_close_is_empty() -> None:
    reader, _writer = _pair()
    await reader.stream.aclose()
    assert await reader.read(10) == b""
