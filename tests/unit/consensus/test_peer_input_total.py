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

import os

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import (
    Checkpoint,
    DecodeError,
    InvariantViolation,
    Prepare,
    PrePrepare,
    Receive,
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
    sender_of,
    snapshot,
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


# ---------------------------------------------------------------- findings kept as specs


@pytest.mark.xfail(reason="open (issue 25): on_pre_prepare creates the log slot before its "
                   "checks, so a refused PRE-PREPARE leaves an empty slot (bounded by the "
                   "window; health() then reports 'no PRE-PREPARE' for that seq)", strict=False)
def test_a_rejected_pre_prepare_leaves_no_slot_behind():
    w = worlds()["fresh"]
    r = w.fresh_replica()
    primary = w.config.primary(r.view)
    bad = w.cluster.auth(primary).sign(PrePrepare(r.view, 3, w.now, (), bytes(32), primary))
    out = r.step(Receive(primary, bad))
    assert [e.kind for e in out.evidence] == ["invalid-message"]
    assert r._log.get(r.view, 3) is None


def test_the_strategies_cover_every_wire_message_type():
    kinds = {name for name in MESSAGE_BUILDERS}
    assert kinds == {cls.__name__ for cls in MESSAGE_TYPES}
    w = worlds()["committed"]
    for name in kinds:
        assert any(type(m).__name__ == name for m in w.pool) or name in {
            "Request", "Conflict"}, f"no real {name} in the traffic pool"
    assert msgspec.msgpack.decode(b"\xc0") is None  # sanity of the raw pieces below
