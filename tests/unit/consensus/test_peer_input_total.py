"""Peer input is total (issue 25): no exception from peer-supplied bytes leaves `Replica.step`
or the node's pump; a rejected message leaves the replica's state as it was; memory stays
bounded however many messages one peer sends.

Bytes come from tests/unit/consensus/wire_strategies.py: every wire message type, built or
taken from real traffic, point-mutated (integer extremes, wrong types, digests of the wrong
length, huge/empty lists, deep nesting, trailing elements) and then re-signed with the real
keys, so bad content carries valid signatures and reaches the handlers. They are fed to
replicas in every mode (fresh, committed with pending requests, primary with unproposed
requests, in a view change after a timeout or after VIEW-CHANGEs, after a view change,
catching up).

Examples per test: PEER_INPUT_EXAMPLES (default 25 per scenario; the file runs in well under
a minute). Long run: PEER_INPUT_EXAMPLES=5000 pytest tests/unit/consensus/test_peer_input_total.py
"""

from __future__ import annotations

import dataclasses
import os

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consensus import (
    Checkpoint,
    DecodeError,
    InvariantViolation,
    Prepare,
    PrePrepare,
    Receive,
    Request,
    Status,
    Tick,
    ViewChange,
    batch_digest,
    decode,
)
from consensus.codec import GENESIS_CHAIN_DIGEST
from tests.unit.consensus.wire_strategies import (
    MESSAGE_BUILDERS,
    MESSAGE_TYPES,
    SCENARIO_BUILDERS,
    apply_output,
    bound_violations,
    feed,
    messages,
    rejected,
    resign,
    sender_of,
    snapshot,
    to_tree,
    wire,
    worlds,
)

EXAMPLES = int(os.environ.get("PEER_INPUT_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
SCENARIOS = sorted(SCENARIO_BUILDERS)


def _feed_checked(w, r, data, fallback: int) -> None:
    """One message through the pump; the properties that hold for every message."""
    sender = sender_of(data, w, fallback)
    before, dropped = snapshot(r), dict(r.dropped)
    msg, out = feed(r, sender, data, w)  # raises = a counter-example
    if rejected(out, dropped, r, msg):
        after = snapshot(r)
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert not changed, f"rejected {type(msg).__name__} changed state: {changed}"
    assert bound_violations(r) == []


def _later(w, r) -> None:
    """Time passes after the messages: timers, retransmissions and buffer replays run over
    whatever the peer left behind (still nothing may raise)."""
    for dt in (1, w.config.status_interval_ms, w.config.timeout_request_ms + 1):
        apply_output(r, r.step(Tick(w.now + dt)), w)
    assert bound_violations(r) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
@SETTINGS
@given(data=st.data())
def test_peer_bytes_never_escape_step_and_a_rejection_changes_nothing(scenario, data):
    """One Byzantine peer (it signs as itself; others' signatures are real or invalid)."""
    w = worlds()[scenario]
    r = w.fresh_replica()
    for _ in range(data.draw(st.integers(1, 4), label="messages")):
        fallback = data.draw(st.sampled_from(w.senders()), label="sender")
        _feed_checked(w, r, data.draw(messages(w, fallback), label="bytes"), fallback)
    _later(w, r)


@pytest.mark.parametrize("scenario", SCENARIOS)
@SETTINGS
@given(data=st.data())
def test_even_a_coalition_signing_bad_content_cannot_crash_a_step(scenario, data):
    """Beyond the fault model: every nested message is validly signed by the replica it
    names (forged certificates reach the deepest checks). Refusals must still be clean; the
    one exception allowed is InvariantViolation, the designed stop when 2f+1 signatures
    contradict what this replica executed."""
    w = worlds()[scenario]
    r = w.fresh_replica()
    for _ in range(data.draw(st.integers(1, 4), label="messages")):
        fallback = data.draw(st.sampled_from(w.senders()), label="sender")
        raw = data.draw(messages(w, fallback, coalition=True), label="bytes")
        try:
            _feed_checked(w, r, raw, fallback)
        except InvariantViolation:
            return
    _later(w, r)


@pytest.mark.parametrize("scenario", ["committed", "vc-joined", "catching-up"])
@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(data=st.data())
def test_with_ed25519_signatures_as_nodes_use(scenario, data):
    w = worlds(fast=False)[scenario]
    r = w.fresh_replica()
    fallback = data.draw(st.sampled_from(w.senders()), label="sender")
    _feed_checked(w, r, data.draw(messages(w, fallback), label="bytes"), fallback)


@pytest.mark.parametrize("kind", sorted(MESSAGE_BUILDERS))
@SETTINGS
@given(data=st.data())
def test_every_message_type_with_valid_signatures_over_bad_content(kind, data):
    w = worlds()[data.draw(st.sampled_from(SCENARIOS), label="scenario")]
    r = w.fresh_replica()
    fallback = data.draw(st.sampled_from(w.senders()), label="sender")
    _feed_checked(w, r, data.draw(messages(w, fallback, kinds=(kind,)), label="bytes"),
                  fallback)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_raises_only_decode_error(data):
    for frame in (data, b"\x01" + data):
        try:
            msg = decode(frame)
        except DecodeError:
            continue
        assert isinstance(msg, MESSAGE_TYPES)


# ---------------------------------------------------------------- memory: one peer's flood

FLOOD = 400


def _flood_kinds(w, sender: int, k: int):
    """The k-th message of a flood of validly signed messages that each want to be kept:
    future-view votes (buffered), votes beyond the high watermark (buffered), checkpoints
    for ever higher seqs, VIEW-CHANGEs for ever higher views, STATUS claims."""
    a = w.cluster.auth(sender)
    r = w.replica
    d = bytes([k % 251]) * 32
    cfg = w.config
    kinds = [
        Prepare(r.view + 1 + k % 2, r.low_watermark + 1 + k, d, sender),
        Prepare(r.view, r.high_watermark + 1 + k, d, sender),
        Checkpoint(cfg.checkpoint_interval * (k + 1), d, sender),
        ViewChange(r.view + 1 + k, 0, GENESIS_CHAIN_DIGEST, (), (), sender),
        Status(r.view + k, bool(k % 2), r.last_executed + k, 0, sender),
        PrePrepare(r.view + 1, r.high_watermark + k, k, (), batch_digest(k, ()),
                   cfg.primary(r.view + 1)),
    ]
    msg = kinds[k % len(kinds)]
    if msg.replica != sender:
        return None
    return a.sign(msg)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_peer_flooding_kept_messages_stays_within_the_documented_bounds(scenario):
    w = worlds()[scenario]
    for sender in w.senders():
        r = w.fresh_replica()
        for k in range(FLOOD):
            msg = _flood_kinds(w, sender, k)
            if msg is not None:
                r.step(Receive(sender, msg))
            assert bound_violations(r) == [], (sender, k)
        # a view change it joined (f+1 rule needs two senders) must not count its views twice
        assert len(r._vcs._by_replica.get(sender, {})) <= r._vcs.per_replica


@pytest.mark.parametrize("scenario", SCENARIOS)
@settings(SETTINGS, max_examples=max(1, EXAMPLES // 5))
@given(data=st.data())
def test_one_peer_sending_many_random_messages_stays_within_the_bounds(scenario, data):
    w = worlds()[scenario]
    r = w.fresh_replica()
    sender = data.draw(st.sampled_from(w.senders()), label="sender")
    for _ in range(data.draw(st.integers(20, 60), label="messages")):
        raw = data.draw(messages(w, sender, mutations=1), label="bytes")
        feed(r, sender, raw, w)
        assert bound_violations(r) == []


# ---------------------------------------------------------------- the node's pump, for real


class _Transport:
    """Peer frames in, our frames nowhere (the node's transport seam)."""

    def __init__(self) -> None:
        self.feed, self.incoming = trio.open_memory_channel(100_000)
        self.sent = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, to: int, data: bytes) -> None:
        self.sent += 1

    async def broadcast(self, data: bytes) -> None:
        self.sent += 1

    def report_invalid(self, peer: int) -> None:
        pass


class _ChainKeys:
    """A local chain's validator keys (read from their homes) and the test clients' keys, in
    the shape `resign` wants: frames shaped for the test cluster, re-signed for this chain."""

    def __init__(self, cfgs, clients) -> None:
        from bftnode.node.build import load_startup_files

        loaded = [load_startup_files(c) for c in cfgs]
        self.domain = loaded[0][1].domain
        self.signers = [key.signer() for key, _ in loaded]
        self.clients = {c.public_key: c for c in clients}
        self.n = len(cfgs)

    def signer_for(self, msg, replicas=None):
        if isinstance(msg, Request):
            return self.clients.get(msg.client_id)
        rid = msg.replica
        if not 0 <= rid < self.n or (replicas is not None and rid not in replicas):
            return None
        return self.signers[rid]


def _collect(strategy, count: int) -> list:
    """`count` values drawn from a Hypothesis strategy (generation only, no shrinking)."""
    out: list = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def grab(value) -> None:
        out.append(value)

    grab()
    return out


def _decodes(data: bytes) -> bool:
    try:
        decode(data)
    except DecodeError:
        return False
    return True


NODE_FRAMES = int(os.environ.get("PEER_INPUT_NODE_FRAMES", "150"))


async def test_a_running_node_survives_peer_bytes_and_keeps_stepping(tmp_path) -> None:
    """The real pump and replica task of a node (LevelDB store, Ed25519, the chain's own keys)
    take a stream of mutated, re-signed frames from every peer; no task dies, the inbox
    drains, and the replica still answers a well-formed STATUS afterwards."""
    from bftnode.home import create_local_chain
    from bftnode.node.build import build_node

    cfgs = create_local_chain(tmp_path, 4, base_port=41_900)
    transport = _Transport()
    node = build_node(dataclasses.replace(cfgs[1], rpc_port=0), transport=transport)
    w = worlds(fast=False)["fresh"]
    assert w.target == 1
    keys = _ChainKeys(cfgs, [w.cluster.client(k) for k in range(3)])
    frames = []
    for fallback, data in _collect(st.tuples(st.sampled_from(w.senders())).flatmap(
            lambda t: st.tuples(st.just(t[0]), messages(w, t[0]))), NODE_FRAMES):
        sender = sender_of(data, w, fallback)
        try:
            data = wire(resign(to_tree(decode(data)), keys, {sender}))
        except DecodeError:
            pass
        frames.append((sender, data))
    received: list[int] = []
    step = node.replica.step

    def counting_step(event):
        if isinstance(event, Receive):
            received.append(event.sender)
        return step(event)

    node.replica.step = counting_step
    decodable = sum(1 for _, data in frames if _decodes(data))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for sender, data in frames:
            await transport.feed.send((sender, data))
        with trio.fail_after(60):
            while (transport.feed.statistics().current_buffer_used
                   or node._inbox_recv.statistics().current_buffer_used):
                await trio.sleep(0.01)
        stepped = len(received)
        await transport.feed.send((2, wire(resign(to_tree(Status(0, False, 0, 0, 2)), keys, {2}))))
        with trio.fail_after(10):
            while len(received) == stepped:  # the replica task still takes peer messages
                await trio.sleep(0.01)
        assert not node.stopped.is_set()
        assert bound_violations(node.replica) == []
        node.stop()
    assert 0 < stepped <= decodable  # bare requests are dropped by the pump


# ---------------------------------------------------------------- findings kept as specs


def test_a_rejected_pre_prepare_leaves_no_slot_behind():
    w = worlds()["fresh"]
    r = w.fresh_replica()
    primary = w.config.primary(r.view)
    req = w.cluster.request(7, 1)  # a batch whose digest does not match it
    bad = w.cluster.auth(primary).sign(PrePrepare(r.view, 3, w.now, (req,), bytes(32), primary))
    out = r.step(Receive(primary, bad))
    assert [e.kind for e in out.evidence] == ["invalid-message"]
    assert r._log.get(r.view, 3) is None


def test_the_strategies_cover_every_wire_message_type():
    kinds = {name for name in MESSAGE_BUILDERS}
    assert kinds == {cls.__name__ for cls in MESSAGE_TYPES}
    w = worlds()["committed"]
    for name in kinds:
        assert any(type(m).__name__ == name for m in w.pool) or name in {
            "Request", "Conflict", "StateVote", "BlocksPruned", "FetchSnapshot",
            "SnapshotChunk"}, f"no real {name} in the traffic pool"
    assert msgspec.msgpack.decode(b"\xc0") is None  # sanity of the raw pieces below
