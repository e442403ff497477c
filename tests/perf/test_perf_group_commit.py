"""The node's group commit keeps the ordering rule: events already waiting are stepped
together, their Outputs merged and applied once — ONE synced persist, then the sends, then the
blocks in ONE synced commit, then the replies — and nothing is sent before the persist that
covers it is durable."""

from __future__ import annotations

import dataclasses

import trio

from bftnode.home import create_local_chain
from bftnode.node.build import build_node
from consensus import (
    Checkpoint,
    ClientRequest,
    ClientRequests,
    Output,
    Receive,
    RecoveredState,
    Rejected,
    Send,
    ViewState,
)
from storage import LevelDBStore

LOG: list[tuple] = []


class RecordingStore(LevelDBStore):
    def persist(self, records):
        super().persist(records)
        LOG.append(("persist", tuple(r.view for r in records if isinstance(r, ViewState))))

    def commit_blocks(self, commits):
        super().commit_blocks(commits)
        LOG.append(("commit", len(commits)))


class RecordingTransport:
    def __init__(self) -> None:
        self._send, self.incoming = trio.open_memory_channel(100)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, to: int, data: bytes) -> None:
        LOG.append(("send", to, data))

    async def broadcast(self, data: bytes) -> None:
        LOG.append(("send", None, data))


class ScriptedReplica:
    """Each peer Checkpoint(seq=k) makes it persist ViewState(view=k) and echo the message to
    replica 2; a client request is refused (so the submit's answer comes after the group)."""

    def __init__(self, config, index, auth, restored: RecoveredState) -> None:
        self.view = restored.view
        self.steps = 0
        self.in_view_change = False  # the rest of consensus.core.ReplicaCore
        self.stable_seq = 0
        self.client_table = None
        self.convicted: dict = {}

    def health(self) -> dict:
        return {}

    def step(self, event) -> Output:
        self.steps += 1
        out = Output(next_deadline_ms=None)
        if isinstance(event, Receive) and isinstance(event.message, Checkpoint):
            k = event.message.seq
            self.view = k
            out.persist.append(ViewState(k, False))
            out.send.append(Send(2, event.message))
        elif isinstance(event, ClientRequest):
            out.reply.append(Rejected(event.request, "scripted"))
        elif isinstance(event, ClientRequests):  # the node steps a group's submits at once
            out.reply.extend(Rejected(r, "scripted") for r in event.requests)
        return out


async def test_waiting_events_share_one_persist_and_every_send_follows_it(tmp_path):
    LOG.clear()
    cfg = create_local_chain(tmp_path, 4, base_port=41000)[1]
    cfg = dataclasses.replace(cfg, rpc_port=0)
    store = RecordingStore(cfg.data_path, cfg.chain_id.encode(), _genesis_hash(cfg), create=True)
    node = build_node(cfg, transport=RecordingTransport(), store=store,
                      replica_factory=ScriptedReplica)
    events = 40
    for k in range(1, events + 1):  # all waiting before the replica task starts
        node._inbox_send.send_nowait(Receive(3, Checkpoint(k, bytes(32), 3)))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.fail_after(10):
            while sum(1 for e in LOG if e[0] == "send") < events:
                await trio.sleep(0.01)
        from bftnode.app import ops

        req = node.sign_op(ops.put(b"k", b"v"))
        res = await node.submit(req)
        assert res.status == "rejected" and res.reason == "scripted"
        node.stop()
    persists = [e for e in LOG if e[0] == "persist"]
    assert len(persists) < events  # merged: not one synced write per event
    durable: set[int] = set()
    sent = 0
    from consensus import decode

    for e in LOG:
        if e[0] == "persist":
            durable.update(e[1])
        elif e[0] == "send":
            sent += 1
            assert decode(e[2]).seq in durable, "a message was sent before its persist"
    assert sent == events


async def test_one_step_at_a_time_still_works_when_nothing_waits(tmp_path):
    LOG.clear()
    cfg = create_local_chain(tmp_path, 4, base_port=41000)[1]
    cfg = dataclasses.replace(cfg, rpc_port=0)
    store = RecordingStore(cfg.data_path, cfg.chain_id.encode(), _genesis_hash(cfg), create=True)
    node = build_node(cfg, transport=RecordingTransport(), store=store,
                      replica_factory=ScriptedReplica)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for k in (1, 2, 3):
            await node._inbox_send.send(Receive(3, Checkpoint(k, bytes(32), 3)))
            with trio.fail_after(10):
                while sum(1 for e in LOG if e[0] == "send") < k:
                    await trio.sleep(0.01)
        node.stop()
    kinds = [e[0] for e in LOG if e[0] in ("persist", "send")]
    assert kinds == ["persist", "send"] * 3


def _genesis_hash(cfg) -> bytes:
    from bftnode.genesis import load_genesis

    return load_genesis(cfg.genesis_path).hash()
