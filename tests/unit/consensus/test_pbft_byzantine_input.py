"""One Byzantine validator cannot crash, halt or bloat an honest replica.

Every message reaches the replica as bytes through `codec.decode`: anything outside the ranges
our own encoders produce is a DecodeError there, and `Replica.step` never raises on what decodes.
Tables keyed by seq, view or peer hold one vote per replica per slot inside a bound relative to
the stable checkpoint, so a faulty replica's votes can never push out the honest ones'. Buffers
are bounded in bytes per sender, and invalid signed traffic counts against its sender.
"""

from __future__ import annotations

import msgspec
import pytest

from consensus import Checkpoint, Forward, Receive, Tick
from consensus.codec import decode, encode
from consensus.errors import DecodeError
from consensus.messages import MAX_REPLICAS, Prepare, PrePrepare

SMALL = {"checkpoint_interval": 4, "watermark_window": 8, "batch_max": 1}
_enc = msgspec.msgpack.Encoder()


def _signed_raw(c, rid: int, fields: list) -> bytes:
    """Wire bytes of [tag, *fields, sig] signed by replica `rid` exactly as `Authenticator` signs
    (domain + canonical encoding with an empty sig), whatever the field values are."""
    body = _enc.encode([*fields, b""])
    sig = c.signers[rid].sign(c.auth(rid).domain + body)
    return b"\x01" + _enc.encode([*fields, sig])


def _feed(replica, sender: int, data: bytes):
    """The node's pump: decode, then step. A DecodeError is the refusal."""
    try:
        msg = decode(data)
    except DecodeError:
        return None
    return replica.step(Receive(sender, msg))


def _run_to(c, k: int, first: int = 0) -> None:
    reqs = [c.request(0, first + i) for i in range(k)]
    for r in reqs:
        c.submit(r)
    assert c.run_until(lambda: c.all_executed(reqs))


# ---------------------------------------------------------------- integer ranges


BIG = [2**63, 2**64 - 1, -1, -(2**63)]


@pytest.mark.parametrize("value", BIG)
def test_pre_prepare_with_an_out_of_range_time_or_seq_is_refused_at_decode(cluster_cls, value):
    c = cluster_cls(**SMALL)
    rep = c.replicas[1]
    for fields in (
        [2, 0, 1, value, [], bytes(32), 0],  # time_ms
        [2, 0, value, 5, [], bytes(32), 0],  # seq
        [2, value, 1, 5, [], bytes(32), 0],  # view
    ):
        data = _signed_raw(c, 0, fields)
        with pytest.raises(DecodeError):
            decode(data)
        _feed(rep, 0, data)  # and never raises


@pytest.mark.parametrize("value", BIG)
def test_block_sync_and_view_change_with_out_of_range_integers_never_raise(cluster_cls, value):
    c = cluster_cls(**SMALL)
    _run_to(c, 2)
    rep = c.replicas[1]

    def messages(v: int) -> tuple[bytes, bytes, bytes]:
        pp = [2, 0, 3, v, [], bytes(32), 0, b"\x00" * 64]
        return (
            _signed_raw(c, 2, [13, [[11, pp, []]], 2]),  # BlockSync
            _signed_raw(c, 2, [7, 1, 0, bytes(32), [], [[6, pp, []]], 2]),  # ViewChange
            _signed_raw(c, 1, [8, 1, [], [pp], 1]),  # NewView
        )

    for data in messages(5):  # the same shapes with an in-range value decode
        decode(data)
    block_sync, view_change, new_view = messages(value)
    for data in (block_sync, view_change, new_view):
        with pytest.raises(DecodeError):
            decode(data)
    _feed(rep, 2, block_sync)
    _feed(rep, 2, view_change)
    _feed(c.replicas[2], 1, new_view)


def test_an_extra_element_nested_deep_is_a_decode_error(cluster_cls):
    c = cluster_cls(**SMALL)
    status = _enc.encode([10, 0, False, 0, 0, 2, b"\x00" * 64])
    deep = b"\x01" + bytes([status[0] + 1]) + status[1:] + b"\x91" * 200_000 + b"\xc0"
    with pytest.raises(DecodeError):
        decode(deep)
    assert _feed(c.replicas[1], 2, deep) is None


def test_unknown_trailing_fields_are_refused(cluster_cls):
    c = cluster_cls(**SMALL)
    prepare = c.auth(2).sign(Prepare(0, 1, bytes(32), 2))
    raw = msgspec.msgpack.decode(encode(prepare)[1:])
    with pytest.raises(DecodeError):
        decode(b"\x01" + _enc.encode([*raw, 0]))


def test_lengths_are_bounded_at_decode(cluster_cls):
    c = cluster_cls(**SMALL)
    with pytest.raises(DecodeError):  # a digest is 32 bytes
        decode(_signed_raw(c, 2, [3, 0, 1, bytes(33), 2]))
    with pytest.raises(DecodeError):  # a checkpoint proof has at most n votes
        decode(_signed_raw(c, 2, [7, 1, 0, bytes(32), [[5, 4, bytes(32), 0, b""]] * (MAX_REPLICAS + 1), [], 2]))


# ---------------------------------------------------------------- checkpoint votes


def test_far_future_checkpoints_from_one_replica_cannot_stop_stability(cluster_cls):
    """A dozen signed checkpoints for seqs far ahead once evicted every genuine vote on
    arrival: nothing became stable and the primary stopped at the high watermark."""
    c = cluster_cls(**SMALL)
    liar = 3
    for k in range(1, 200):
        cp = c.auth(liar).sign(Checkpoint(1000 + 4 * k, b"\xee" * 32, liar))
        for i in range(3):
            c.step(i, Receive(liar, cp))
    c.deliver_all()
    _run_to(c, 24)
    for i in range(3):
        assert c.replicas[i].stable_seq >= 16, (i, c.replicas[i].stable_seq)
        assert c.replicas[i].view == 0  # no view change was needed to get there
        assert len(c.replicas[i]._checkpoints.seqs()) <= c.replicas[i]._checkpoints.max_seqs


def test_checkpoint_table_holds_at_most_one_vote_per_replica_per_seq_in_its_horizon(cluster_cls):
    c = cluster_cls(**SMALL)
    rep = c.replicas[0]
    for k in range(1, 10_000, 7):
        rep.step(Receive(3, c.auth(3).sign(Checkpoint(4 * k, b"\xee" * 32, 3))))
    votes = rep._checkpoints
    assert len(votes.seqs()) <= votes.max_seqs
    assert max(votes.seqs(), default=0) <= rep.stable_seq + votes.max_seqs * 4


# ---------------------------------------------------------------- buffers in bytes


def test_future_window_messages_are_buffered_within_a_byte_share_per_sender(cluster_cls):
    c = cluster_cls(**SMALL)
    rep = c.replicas[1]
    big = c.request(0, 1, op=b"x" * 60_000)
    for seq in range(9, 9 + 2000):  # above the high watermark (8) in the current view
        pp = c.auth(0).sign(PrePrepare(0, seq, 1, (big,), bytes(32), 0))
        rep.step(Receive(0, pp))
    held = sum(len(m.requests[0].op) for s, m, _ in rep._buffer if isinstance(m, PrePrepare))
    assert held <= rep.buffer_max_bytes // c.config.n


# ---------------------------------------------------------------- invalid signed traffic


def test_a_forward_with_a_badly_signed_request_is_refused_whole_and_counted(cluster_cls):
    c = cluster_cls(**SMALL)
    rep = c.replicas[1]
    good = c.request(0, 1)
    bad = msgspec.structs.replace(c.request(0, 2), sig=b"\x00" * 64)
    fwd = c.auth(2).sign(Forward((bad,) * 5000 + (good,), 2))
    out = rep.step(Receive(2, fwd))
    assert len(out.evidence) <= 1
    assert rep.pending_count == 0  # nothing from a FORWARD that carries a forgery
    assert rep.peer_faults(2) >= 1


def test_a_peer_over_its_fault_budget_is_cooled_off_and_honest_peers_are_not(cluster_cls):
    c = cluster_cls(**SMALL)
    rep = c.replicas[1]
    bad = msgspec.structs.replace(c.request(0, 2), sig=b"\x00" * 64)
    evidence = 0
    for i in range(10_000):
        out = rep.step(Receive(2, c.auth(2).sign(Forward((bad,), 2, ))))
        evidence += len(out.evidence)
        if i % 100 == 0:
            rep.step(Tick(i // 100))
    assert evidence <= 200  # reported, with counts, not once per junk message
    assert rep.cooling_off(2)
    assert not rep.cooling_off(3)
    good = c.request(0, 1)
    rep.step(Receive(3, c.auth(3).sign(Forward((good,), 3))))
    assert rep.pending_count == 1


def test_one_relay_fills_only_its_byte_share_of_the_pending_pool(cluster_cls):
    c = cluster_cls(**SMALL, max_pending_bytes=4 * 2 * 1024 * 1024)
    rep = c.replicas[1]
    big = [c.request(k, 1, op=b"v" * 60_000) for k in range(200)]  # ~12 MB of valid requests
    for k in range(0, 200, 10):
        rep.step(Receive(2, c.auth(2).sign(Forward(tuple(big[k:k + 10]), 2))))
    assert rep.pending_count * 60_000 <= rep.pool_share_bytes
    assert rep.peer_faults(2) == 0  # valid requests are not a fault, just over its share
    honest = c.request(999, 1)
    rep.step(Receive(3, c.auth(3).sign(Forward((honest,), 3))))
    assert rep._is_admitted(honest)


def test_view_changes_a_peer_can_make_us_verify_are_rate_limited(cluster_cls):
    from consensus import ViewChange

    c = cluster_cls(**SMALL)
    rep = c.replicas[1]
    verified = []
    inner = rep.auth.verifier.verify
    rep.auth.verifier.verify = lambda *a: verified.append(1) or inner(*a)
    for v in range(1, 1000):
        rep.step(Receive(3, c.auth(3).sign(ViewChange(v, 0, bytes(32), (), (), 3))))
    assert len(verified) <= 16
    assert rep.dropped["costly-message-rate-limited"] >= 900


def test_decoded_size_counts_objects_not_just_wire_bytes(cluster_cls):
    from consensus.peers import decoded_bytes

    c = cluster_cls(**SMALL)
    tiny = [[1, b"", k, b"", 0, b""] for k in range(10_000)]
    data = _signed_raw(c, 2, [9, tiny, 2])
    msg = decode(data)
    assert len(data) < 200_000
    assert decoded_bytes(msg, len(data)) >= 10_000 * 256  # what the objects really hold
