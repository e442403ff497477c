"""The Replica's contract with its shell: determinism, deadlines, real Ed25519, local misuse and
broken invariants, and that peer input never raises."""

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import (
    BlockSync,
    Checkpoint,
    ClientRequest,
    CommittedBlock,
    Config,
    FetchedBlocks,
    InvariantViolation,
    LocalProtocolError,
    NewView,
    Prepare,
    PrePrepare,
    Receive,
    Replica,
    Request,
    Status,
    Tick,
    ViewChange,
)
from testnet.checkers import find_equivocations


def _trace(cluster_cls):
    c = cluster_cls(timeout_request_ms=200, timeout_view_change_ms=200, status_interval_ms=50)
    c.crash(0)
    reqs = [c.request(k % 2, k) for k in range(8)]
    for k, r in enumerate(reqs):
        c.submit(r, to=1 + k % 3)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=5_000)
    return [(m.__class__.__name__, msgspec.msgpack.encode(m)) for m in c.sent]


def test_same_inputs_give_the_same_outputs(cluster_cls):
    assert _trace(cluster_cls) == _trace(cluster_cls)


def test_real_ed25519_normal_case_and_view_change(cluster_cls):
    c = cluster_cls(fast=False, timeout_request_ms=200, timeout_view_change_ms=200,
                    status_interval_ms=50)
    reqs = [c.request(0, k) for k in range(3)]
    for r in reqs:
        c.submit(r, to=2)
    assert c.run_until(lambda: c.all_executed(reqs))
    c.crash(0)
    more = [c.request(1, k) for k in range(3)]
    for r in more:
        c.submit(r, to=3)
    assert c.run_until(lambda: c.all_executed(reqs + more), timeout_ms=5_000)
    assert c.replicas[1].view == 1
    c.assert_agreement()
    assert find_equivocations(c.sent) == []


def test_a_signature_from_the_fast_scheme_is_rejected_by_ed25519_replicas(cluster_cls):
    ed = cluster_cls(fast=False)
    fast = cluster_cls(fast=True)
    p = fast.auth(2).sign(Prepare(0, 1, b"d" * 32, 2))
    out = ed.replicas[1].step(Receive(2, p))
    assert [e.kind for e in out.evidence] == ["bad-signature"]


def test_next_deadline_schedules_the_next_tick(cluster_cls):
    c = cluster_cls(status_interval_ms=500, timeout_request_ms=2_000)
    rep = c.replicas[1]
    out = rep.step(Tick(0))
    assert out.next_deadline_ms == 500
    out = rep.step(ClientRequest(c.request(0, 1)))
    assert out.next_deadline_ms == 500
    out = rep.step(Tick(1_900))
    assert out.next_deadline_ms == 2_000  # the request timer comes before the next status
    out = rep.step(Tick(2_000))
    assert rep.in_view_change and rep.view == 1


def test_local_misuse_raises_local_protocol_error(cluster_cls):
    c = cluster_cls()
    with pytest.raises(LocalProtocolError):
        Replica(c.config, 4, c.auth(0))
    with pytest.raises(LocalProtocolError):
        Replica(Config(n=7), 0, c.auth(0))
    with pytest.raises(LocalProtocolError):
        c.replicas[0].step("not an event")
    with pytest.raises(LocalProtocolError):
        c.replicas[0].step(FetchedBlocks(0, ()))


def test_2f_plus_1_checkpoints_against_our_own_block_hash_is_an_invariant_violation(cluster_cls):
    c = cluster_cls(checkpoint_interval=2, watermark_window=4, batch_max=1)
    reqs = [c.request(0, k) for k in range(2)]
    c.tamper = lambda s, t, m: [] if isinstance(m, Checkpoint) else None
    for r in reqs:
        c.submit(r)
    assert c.run_until(lambda: c.all_executed(reqs))
    rep = c.replicas[3]
    assert rep.last_executed == 2 and rep.stable_seq == 0
    for i in (0, 1):
        rep.step(Receive(i, c.auth(i).sign(Checkpoint(2, b"x" * 32, i))))
    with pytest.raises(InvariantViolation):
        rep.step(Receive(2, c.auth(2).sign(Checkpoint(2, b"x" * 32, 2))))


def test_health_explains_missing_quorums(cluster_cls):
    c = cluster_cls()
    c.crash(2)
    c.crash(3)
    c.submit(c.request(0, 1), to=1)
    c.tick(10)
    h = c.replicas[1].health()
    assert h["mode"] == "normal" and h["pending_requests"] == 1
    assert h["in_flight"][1]["missing_prepares"] == 1
    assert h["in_flight"][1]["missing_commits"] == 3


_any_msg = st.one_of(
    st.builds(PrePrepare, st.integers(-2, 3), st.integers(-2, 300), st.integers(-5, 10**6),
              st.just(()), st.binary(max_size=40), st.integers(-1, 5), st.binary(max_size=64)),
    st.builds(Prepare, st.integers(-2, 3), st.integers(-2, 300), st.binary(max_size=40),
              st.integers(-1, 5), st.binary(max_size=64)),
    st.builds(Checkpoint, st.integers(-16, 300), st.binary(max_size=40), st.integers(-1, 5)),
    st.builds(ViewChange, st.integers(-1, 9), st.integers(-16, 64), st.binary(max_size=40),
              st.just(()), st.just(()), st.integers(-1, 5)),
    st.builds(NewView, st.integers(-1, 9), st.just(()), st.just(()), st.integers(-1, 5)),
    st.builds(Status, st.integers(-1, 9), st.booleans(), st.integers(-5, 500),
              st.integers(-5, 500), st.integers(-1, 5)),
    st.builds(BlockSync, st.just((CommittedBlock(PrePrepare(0, 1, 0, (), b"", 0), ()),)),
              st.integers(-1, 5)),
    st.builds(Request, st.binary(max_size=33), st.integers(-1, 5), st.binary(max_size=8)),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=_any_msg, sender=st.integers(0, 3), sign=st.booleans())
def test_peer_input_never_raises(cluster_cls, msg, sender, sign):
    c = cluster_cls()
    rep = c.replicas[1]
    if sign and hasattr(msg, "replica") and 0 <= msg.replica < 4:
        msg = c.auth(msg.replica).sign(msg)
    out = rep.step(Receive(sender, msg))
    assert out.execute == []
