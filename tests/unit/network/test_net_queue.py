"""Per-peer send queue (bounded, drop-oldest) and the invalid-traffic rate limit."""

import pytest
import trio

from network.transport import InvalidTracker, PeerSpec, SendQueue


def test_queue_overflow_drops_the_oldest_frames_and_keeps_the_bound():
    q = SendQueue(max_frames=3, max_bytes=1000)
    dropped = [q.put(bytes([i])) for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert q.drain(10**6) == [b"\x02", b"\x03", b"\x04"]
    assert len(q) == 0 and q.nbytes == 0


def test_queue_is_bounded_in_bytes_too():
    q = SendQueue(max_frames=100, max_bytes=10)
    q.put(b"a" * 4)
    q.put(b"b" * 4)
    assert q.put(b"c" * 4) == 1
    assert q.nbytes == 8
    assert q.drain(100) == [b"b" * 4, b"c" * 4]


def test_drain_coalesces_up_to_the_byte_cap_but_always_returns_one_frame():
    q = SendQueue()
    for _ in range(10):
        q.put(b"x" * 100)
    assert len(q.drain(350)) == 3
    big = SendQueue()
    big.put(b"y" * 1000)
    assert big.drain(10) == [b"y" * 1000]


def test_requeue_front_restores_order_and_respects_the_bound():
    q = SendQueue(max_frames=3, max_bytes=1000)
    for f in (b"1", b"2", b"3"):
        q.put(f)
    batch = q.drain(2)  # b"1", b"2"
    q.put(b"4")
    assert q.requeue_front(batch) == 1  # room for one of the two
    assert q.drain(100) == [b"2", b"3", b"4"]


async def test_wait_nonempty_wakes_on_put():
    q = SendQueue()
    async with trio.open_nursery() as n:
        n.start_soon(q.wait_nonempty)
        await trio.testing.wait_all_tasks_blocked()
        q.put(b"z")
    assert len(q) == 1


def test_invalid_tracker_trips_only_above_the_limit_within_the_window():
    t = InvalidTracker(limit=3, window_s=10.0)
    assert [t.strike(float(i)) for i in range(3)] == [False, False, False]
    assert t.strike(3.0) is True
    slow = InvalidTracker(limit=3, window_s=1.0)
    assert not any(slow.strike(float(i) * 2) for i in range(20))


def test_peer_spec_requires_a_32_byte_key():
    with pytest.raises(ValueError):
        PeerSpec(0, b"short", "/ip4/127.0.0.1/tcp/1")
