"""A node's transient memory under a backlog is bounded in bytes: the peer messages waiting in
its inbox (INBOX_MAX_BYTES of wire bytes; past it the pump waits) and the requests of one
synced block commit (EXEC_CHUNK_REQUESTS; a catching-up node's 64 fetched blocks are several
commits, not one multi-MB batch)."""

from __future__ import annotations

import dataclasses

import pytest
import trio

import bftnode.node.driver as driver
import bftnode.node.executor as executor
from bftnode.home import create_local_chain
from bftnode.node.build import build_node
from bftnode.node.executor import _chunks
from consensus import Checkpoint, Execute, PrePrepare, Receive, Request, decode, encode
from consensus.codec import batch_digest, chain_digest
from consensus.peers import decoded_bytes

D = b"\x01" * 32


def _ex(seq: int, n: int) -> Execute:
    reqs = tuple(Request(b"\x02" * 32, i, b"op") for i in range(n))
    pp = PrePrepare(0, seq, 1, reqs, D, 0)
    return Execute(seq, 0, 1, reqs, (), D, D, D, pp, ())


def test_blocks_are_cut_into_runs_of_bounded_requests_in_order() -> None:
    exs = [_ex(i, 60) for i in range(1, 71)]
    runs = _chunks(exs, 2000)
    assert [len(r) for r in runs] == [33, 33, 4]
    assert [ex for r in runs for ex in r] == exs  # nothing lost, nothing reordered
    assert all(sum(len(ex.requests) for ex in r) <= 2000 for r in runs)


def test_a_block_bigger_than_the_bound_is_a_run_of_its_own() -> None:
    exs = [_ex(1, 3000), _ex(2, 5), _ex(3, 2500), _ex(4, 0)]
    assert [[ex.seq for ex in r] for r in _chunks(exs, 2000)] == [[1], [2], [3, 4]]
    assert _chunks([], 2000) == []


class _Transport:
    def __init__(self) -> None:
        self.feed, self.incoming = trio.open_memory_channel(10_000)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, to: int, data: bytes) -> None:
        pass

    async def broadcast(self, data: bytes) -> None:
        pass


async def _settle() -> None:
    for _ in range(50):
        await trio.lowlevel.checkpoint()


FRAME = encode(Checkpoint(1, bytes(32), 3))
COST = decoded_bytes(decode(FRAME), len(FRAME))  # what one counts against the inbox bound


def _fed_node(tmp_path, port: int, frames: int):
    """A node (replica task not running) whose transport holds `frames` peer frames."""
    cfg = create_local_chain(tmp_path, 4, base_port=port)[1]
    transport = _Transport()
    node = build_node(dataclasses.replace(cfg, rpc_port=0), transport=transport)
    for _ in range(frames):
        transport.feed.send_nowait((3, FRAME))
    return node


async def _drain(node, n: int) -> None:
    """Take `n` more items as the replica task would; then no bytes are left accounted."""
    for _ in range(n):
        with trio.fail_after(5):
            node._taken(await node._inbox_recv.receive())
    assert node._inbox_recv.statistics().current_buffer_used == 0
    assert node._inbox_bytes == 0


async def test_the_pump_stops_at_the_inbox_byte_bound_and_resumes_as_items_are_taken(
        tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(driver, "INBOX_MAX_BYTES", 10 * COST)
    node = _fed_node(tmp_path, 41100, 25)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node._pump_incoming)  # the replica task is not running: nothing drains
        await _settle()
        assert node._inbox_recv.statistics().current_buffer_used == 10
        assert node._inbox_bytes == 10 * COST
        taken = [node._taken(node._inbox_recv.receive_nowait()) for _ in range(3)]
        assert all(isinstance(t, Receive) and t.sender == 3 for t in taken)
        await _settle()
        assert node._inbox_recv.statistics().current_buffer_used == 10  # refilled to the bound
        await _drain(node, 22)
        nursery.cancel_scope.cancel()
    node.close()


async def test_one_message_bigger_than_the_bound_still_passes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(driver, "INBOX_MAX_BYTES", COST // 2)
    node = _fed_node(tmp_path, 41200, 3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node._pump_incoming)
        await _settle()
        assert node._inbox_recv.statistics().current_buffer_used == 1  # one at a time
        await _drain(node, 3)
        nursery.cancel_scope.cancel()
    node.close()


@pytest.mark.parametrize("chunk", [1, 7])
async def test_a_group_of_blocks_commits_in_bounded_runs_and_all_execute(
        tmp_path, monkeypatch, chunk) -> None:
    commits: list[int] = []
    monkeypatch.setattr(executor, "EXEC_CHUNK_REQUESTS", chunk)
    cfg = create_local_chain(tmp_path, 4, base_port=41300)[1]
    # the state tree off: with it on, blocks commit one by one (each block's depth bound reads
    # the tree of the block before; docs/storage.md "State tree")
    cfg = dataclasses.replace(cfg, rpc_port=0, authenticated_state=False)
    node = build_node(cfg, transport=_Transport())
    real = node.store.commit_blocks

    def recording(cs):
        commits.append(sum(len(c.execute.requests) for c in cs))
        real(cs)

    monkeypatch.setattr(node.store, "commit_blocks", recording)
    from bftnode.app import ops

    exs = []
    prev = node.store.last_block_hash()
    for seq in range(1, 6):  # 5 blocks of 3 signed txs, chained as consensus would
        reqs = tuple(node.sign_op(ops.put(f"k{seq}-{i}".encode(), b"v")) for i in range(3))
        digest = batch_digest(1000 + seq, reqs)
        pp = PrePrepare(0, seq, 1000 + seq, reqs, digest, 0)
        block = chain_digest(prev, seq, digest)
        exs.append(Execute(seq, 0, 1000 + seq, reqs, (), digest, prev, block, pp, ()))
        prev = block
    await node._execute_group(exs)
    assert node.height() == 5
    assert sum(commits) == 15
    assert max(commits) <= max(chunk, 3)  # a 3-tx block is never split
    assert len(commits) == (5 if chunk == 1 else 3)  # 7 -> runs of 2, 2, 1 blocks
    node.close()
