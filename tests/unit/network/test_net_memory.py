"""MemoryTransport: the in-process twin of the libp2p transport, with fault knobs."""

import pytest
import trio

from network.memory import MemoryNetwork


async def _recv_all(transport, count, timeout=5.0):
    got = []
    with trio.fail_after(timeout):
        while len(got) < count:
            got.append(await transport.incoming.receive())
    return got


async def test_broadcast_reaches_every_peer_except_the_sender():
    net = MemoryNetwork(4)
    ts = [net.transport(i) for i in range(4)]
    async with ts[0], ts[1], ts[2], ts[3]:
        await ts[0].broadcast(b"hi")
        for t in ts[1:]:
            assert await _recv_all(t, 1) == [(0, b"hi")]
        with trio.move_on_after(0.05):
            await ts[0].incoming.receive()
            pytest.fail("broadcast looped back to the sender")


async def test_send_to_self_loops_back_and_unknown_peer_is_refused():
    net = MemoryNetwork(2)
    t = net.transport(0)
    async with t:
        await t.send(0, b"me")
        assert await _recv_all(t, 1) == [(0, b"me")]
        with pytest.raises(ValueError):
            await t.send(7, b"x")


async def test_per_link_order_is_fifo():
    net = MemoryNetwork(2)
    a, b = net.transport(0), net.transport(1)
    async with a, b:
        for i in range(200):
            await a.send(1, i.to_bytes(2, "big"))
        got = await _recv_all(b, 200)
        assert [int.from_bytes(p, "big") for _, p in got] == list(range(200))


async def test_partition_drops_and_heal_restores():
    net = MemoryNetwork(4)
    ts = [net.transport(i) for i in range(4)]
    async with ts[0], ts[1], ts[2], ts[3]:
        net.partition({0, 1}, {2, 3})
        await ts[0].broadcast(b"p")
        assert await _recv_all(ts[1], 1) == [(0, b"p")]
        assert ts[0].peer_stats()[2]["drops"] == {"partitioned": 1}
        net.heal()
        await ts[0].send(2, b"q")
        assert await _recv_all(ts[2], 1) == [(0, b"q")]


async def test_seeded_drop_is_reproducible():
    def run(seed):
        net = MemoryNetwork(2, seed=seed)
        net.set_drop(0.5)
        return [net.should_drop(0, 1) for _ in range(50)]
    assert run(7) == run(7)
    assert 0 < sum(run(7)) < 50


async def test_delay_is_applied_per_link(autojump_clock):
    net = MemoryNetwork(3)
    ts = [net.transport(i) for i in range(3)]
    net.set_delay(1.0, src=0, dst=1)
    async with ts[0], ts[1], ts[2]:
        start = trio.current_time()
        await ts[0].broadcast(b"d")
        await _recv_all(ts[2], 1)
        assert trio.current_time() - start < 0.5
        await _recv_all(ts[1], 1)
        assert trio.current_time() - start >= 1.0


async def test_slow_consumer_overflows_only_its_own_queue():
    net = MemoryNetwork(3, queue_max_frames=10, incoming_capacity=5)
    ts = [net.transport(i) for i in range(3)]
    async with ts[0], ts[1], ts[2]:
        got = []
        for i in range(100):
            await ts[0].broadcast(i.to_bytes(1, "big"))  # never blocks
            await trio.testing.wait_all_tasks_blocked()
            got += await _recv_all(ts[1], 1)  # peer 1 keeps up; peer 2 never reads
        assert [p[0] for _, p in got] == list(range(100))
        stats = ts[0].peer_stats()
        assert stats[1]["drops"] == {}
        assert stats[2]["drops"]["queue_full"] > 0
        assert stats[2]["queue_depth"] <= 10


async def test_peer_reported_invalid_too_often_is_cut_off_for_the_cooloff(autojump_clock):
    net = MemoryNetwork(2)
    a, b = net.transport(0), net.transport(1)
    b.cooloff_s = 30.0
    async with a, b:
        for _ in range(21):
            b.report_invalid(0)
        await a.send(1, b"ignored")
        await trio.sleep(1)
        assert b.peer_stats()[0]["drops"]["cooloff"] == 1
        await trio.sleep(30)
        await a.send(1, b"heard")
        assert await _recv_all(b, 1) == [(0, b"heard")]


async def test_frame_to_a_stopped_endpoint_is_counted_not_delivered():
    net = MemoryNetwork(2)
    a = net.transport(0)
    async with a:
        await a.send(1, b"x")
        with trio.fail_after(2):
            while a.peer_stats()[1]["drops"].get("peer_down") != 1:
                await trio.sleep(0.01)
