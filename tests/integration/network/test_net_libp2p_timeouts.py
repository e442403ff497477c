"""Libp2pTransport's stream timers on real py-libp2p hosts over 127.0.0.1: a silent peer is
dropped after read_timeout_s, keepalives keep an idle link up, a stalled write is given up
after write_timeout_s. The timers are one re-armed cancel scope per stream (network/libp2p.py
`_timer_slack`), so each fires between timeout - slack and timeout."""

import pytest
import trio
from libp2p.peer.peerinfo import PeerInfo
from libp2p_net_helpers import listen_addr, mesh, receive_until, wait_until

from network.framing import encode_frame
from network.libp2p import (
    PROTOCOL_ID,
    _timer_slack,
    key_pair_from_seed,
    peer_id_from_public_key,
    secure_host,
)

pytestmark = pytest.mark.integration

READ_TIMEOUT = 1.0


async def test_a_validator_stream_that_goes_silent_is_closed_after_the_read_timeout():
    # keepalive far beyond the read timeout: only the silent stream is under test
    async with mesh(3, read_timeout_s=READ_TIMEOUT, keepalive_interval_s=30.0) as (
            nodes, seeds, specs):
        victim = nodes[0].transport
        nodes[2].kill()  # validator 2's key, driven by hand: one frame, then silence
        byz = secure_host(key_pair_from_seed(seeds[2]), listen_addr(specs[2]))
        async with byz.run([listen_addr(specs[2])]):
            pid = peer_id_from_public_key(specs[0].public_key)
            with trio.fail_after(10):
                await byz.connect(PeerInfo(pid, [listen_addr(specs[0])]))
                stream = await byz.new_stream(pid, [PROTOCOL_ID])
                await stream.write(encode_frame(b"then-silence"))
            got = await receive_until(victim, b"then-silence")
            t0 = trio.current_time()
            assert got[-1] == (2, b"then-silence")
            await wait_until(lambda: victim.peer_stats()[2]["read_timeouts"] == 1, timeout=10)
            elapsed = trio.current_time() - t0
            assert not victim.peer_stats()[2]["inbound_connected"]
            assert READ_TIMEOUT - _timer_slack(READ_TIMEOUT) - 0.05 <= elapsed < 5.0


async def test_keepalives_hold_an_idle_link_open_across_several_read_timeouts():
    async with mesh(2, read_timeout_s=READ_TIMEOUT, keepalive_interval_s=0.2) as (nodes, _, _):
        a, b = nodes[0].transport, nodes[1].transport
        await a.send(1, b"first")
        assert (await receive_until(b, b"first"))[-1] == (0, b"first")
        streams = b.peer_stats()[0]["inbound_streams"]
        # idle for three read timeouts: the link must stay up the whole time
        with trio.move_on_after(3 * READ_TIMEOUT):
            while True:
                s = b.peer_stats()[0]
                assert s["inbound_connected"] and s["read_timeouts"] == 0
                await trio.sleep(0.05)
        await a.send(1, b"second")
        assert (await receive_until(b, b"second"))[-1] == (0, b"second")
        s = b.peer_stats()[0]
        assert s["inbound_streams"] == streams and s["read_timeouts"] == 0
        assert a.peer_stats()[1]["write_timeouts"] == 0


async def test_a_write_to_a_peer_that_stops_reading_is_given_up_after_the_write_timeout():
    # peer 1 never consumes: its read loop blocks on a full incoming channel (its own read
    # timer is lifted meanwhile), the Yamux window and TCP buffers fill, our write stalls
    async with mesh(2, write_timeout_s=1.0, incoming_capacity=1) as (nodes, _, _):
        a, b = nodes[0].transport, nodes[1].transport
        payload = b"w" * 60_000
        with trio.fail_after(30):
            while a.peer_stats()[1]["write_timeouts"] == 0:
                if a.queue_depth(1) < 100:
                    await a.send(1, payload)
                await trio.sleep(0.01)
        assert b.peer_stats()[0]["read_timeouts"] == 0  # waiting on us is not silence
