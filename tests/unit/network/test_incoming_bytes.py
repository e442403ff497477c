"""The inbound channel is bounded per sender in bytes: a peer sending big frames fast waits on
its own share, while every other peer keeps room for its frames."""

import pytest
import trio
import trio.testing

from network.transport import open_incoming


def test_a_sender_over_its_byte_share_is_refused_and_others_are_not():
    send, recv = open_incoming(capacity=1000, peer_bytes=10_000)
    sent = 0
    with pytest.raises(trio.WouldBlock):
        for _ in range(100):
            send.send_nowait((1, b"x" * 3000))
            sent += 1
    assert sent == 3 and recv.held_bytes(1) == 9000
    send.send_nowait((2, b"y" * 3000))  # another peer's share is untouched
    assert recv.receive_nowait() == (1, b"x" * 3000)
    assert recv.held_bytes(1) == 6000
    send.send_nowait((1, b"x" * 3000))  # room again


def test_one_frame_bigger_than_the_share_passes_alone():
    send, recv = open_incoming(capacity=10, peer_bytes=100)
    send.send_nowait((1, b"z" * 1000))
    with pytest.raises(trio.WouldBlock):
        send.send_nowait((1, b"z"))
    recv.receive_nowait()
    assert recv.held_bytes(1) == 0


async def test_a_waiting_sender_resumes_when_its_bytes_are_taken():
    send, recv = open_incoming(capacity=1000, peer_bytes=10_000)
    done = trio.Event()

    async def flood():
        for _ in range(10):
            await send.send((1, b"x" * 5000))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        await trio.testing.wait_all_tasks_blocked()
        assert recv.held_bytes(1) == 10_000 and not done.is_set()
        got = 0
        async for _peer, data in recv:
            got += len(data)
            assert recv.held_bytes(1) <= 10_000
            if got == 50_000:
                break
        with trio.fail_after(5):
            await done.wait()
