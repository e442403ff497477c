"""View changes fit any load: VIEW-CHANGE and NEW-VIEW carry pre-prepare headers and votes, so
their size is bounded by n and the window (consensus.types.view_change_bytes / new_view_bytes),
never by the batches - a full window of the largest legal batches included. A replica that
never saw a re-proposed batch's body catches the block up by block sync."""

import msgspec
import pytest

from consensus import Checkpoint, ClientRequest, Commit, NewView, Prepare, PrePrepare, ViewChange
from consensus.codec import MAX_MESSAGE_BYTES, encode
from consensus.types import (
    FRAME_LIMIT_BYTES,
    HEADER_BYTES,
    VOTE_BYTES,
    Config,
    new_view_bytes,
    view_change_bytes,
)

BIG = 2**63 - 1
FAST = {"timeout_request_ms": 200, "timeout_view_change_ms": 200, "status_interval_ms": 50}
SIG = b"\xff" * 64
D = b"\xff" * 32


def test_the_size_constants_bound_messages_with_the_largest_field_values():
    assert FRAME_LIMIT_BYTES == MAX_MESSAGE_BYTES
    assert len(encode(PrePrepare(BIG, BIG, BIG, (), D, 1023, SIG))) <= HEADER_BYTES
    for vote in (Prepare(BIG, BIG, D, 1023, SIG), Commit(BIG, BIG, D, 1023, SIG),
                 Checkpoint(BIG, D, 1023, SIG)):
        assert len(encode(vote)) <= VOTE_BYTES


@pytest.mark.parametrize("n", [4, 7, 10])
def test_default_windows_leave_view_changes_far_below_the_frame_limit(n):
    cfg = Config(n=n)
    assert new_view_bytes(n, cfg.watermark_window) < MAX_MESSAGE_BYTES // 2


def test_a_config_whose_new_view_could_not_be_sent_is_refused():
    with pytest.raises(ValueError, match="NEW-VIEW"):
        Config(n=100, watermark_window=256, checkpoint_interval=16)


def _submit_to_primary(c, reqs, prepared_slots: int):
    for r in reqs:  # clients send to the primary and to replica 1 (which relays)
        c.step(0, ClientRequest(r))
        c.step(1, ClientRequest(r))
    assert c.run_until(lambda: len(c.replicas[1]._prepared) >= prepared_slots, timeout_ms=2_000)


def test_a_full_window_of_max_size_batches_changes_view_with_small_messages(cluster_cls):
    c = cluster_cls(**FAST, max_pending_bytes=256 * 1024 * 1024)
    cfg = c.config
    per_batch = cfg.batch_max_bytes // (60 * 1024 + 160)
    # commits are lost: every slot of the window prepares, nothing executes
    c.tamper = lambda s, t, m: [] if isinstance(m, Commit) else None
    reqs = [c.request(k, 1, op=b"v" * (60 * 1024)) for k in range(per_batch * 32 + 200)]
    _submit_to_primary(c, reqs, cfg.watermark_window)
    prepared = c.replicas[1]._prepared
    assert len(prepared) == cfg.watermark_window  # the window is full of ~1 MiB batches
    batch_bytes = len(encode(prepared[1].pre_prepare))
    assert batch_bytes > 900_000
    # view 0's commits stay lost: the slots are still only prepared when the view changes
    c.tamper = lambda s, t, m: [] if isinstance(m, Commit) and m.view == 0 else None
    c.crash(0)
    assert c.run_until(lambda: c.all_executed(reqs, [1, 2, 3]), timeout_ms=20_000)
    vcs = [m for m in c.sent if isinstance(m, ViewChange) and m.prepared]
    nvs = [m for m in c.sent if isinstance(m, NewView)]
    assert vcs and nvs
    biggest_vc = max(len(encode(m)) for m in vcs)
    biggest_nv = max(len(encode(m)) for m in nvs)
    assert biggest_vc <= view_change_bytes(cfg.n, cfg.watermark_window)
    assert biggest_nv <= new_view_bytes(cfg.n, cfg.watermark_window)
    # with whole pre-prepares the VIEW-CHANGE alone would be the window times a batch
    assert biggest_nv < batch_bytes
    c.assert_agreement()


def test_a_replica_without_the_bodies_catches_the_reproposed_blocks_up(cluster_cls):
    c = cluster_cls(**FAST)
    # replica 3 never sees a PRE-PREPARE of view 0, and commits are lost: slots prepare at 0-2
    c.tamper = lambda s, t, m: [] if isinstance(m, Commit) or (
        isinstance(m, PrePrepare) and t == 3) else None
    reqs = [c.request(k, 1, op=b"x" * 1000) for k in range(40)]
    _submit_to_primary(c, reqs, 1)
    assert c.replicas[1]._prepared and not c.replicas[3]._prepared
    c.tamper = None
    c.crash(0)
    assert c.run_until(lambda: c.all_executed(reqs, [1, 2, 3]), timeout_ms=20_000)
    assert c.replicas[3].dropped["execution-waiting-for-batch-body"] >= 1
    c.assert_agreement()


def test_a_header_outside_a_new_view_is_dropped_not_voted(cluster_cls):
    from consensus import Receive, batch_digest

    c = cluster_cls(**FAST)
    r = c.request(0, 1)
    pp = c.auth(0).sign(PrePrepare(0, 1, 0, (r,), batch_digest(0, (r,)), 0))
    hdr = msgspec.structs.replace(pp, requests=())
    out = c.replicas[1].step(Receive(0, hdr))
    assert not out.send and not out.evidence
    assert c.replicas[1].dropped["pre-prepare-without-body"] == 1


def _drop_at(phase: str):
    """What view 0 loses, so the view change meets its slots in `phase`."""
    def tamper(s, t, m):
        if getattr(m, "view", None) != 0:
            return None
        if phase == "pre-prepared" and isinstance(m, Prepare | Commit):
            return []  # pre-prepares arrive, nothing prepares
        if phase == "prepared" and isinstance(m, Commit):
            return []  # every slot prepares, none commits
        if phase == "committed-at-one" and isinstance(m, Commit) and t != 1:
            return []  # only replica 1 commits and executes
        return None
    return tamper


@pytest.mark.parametrize("phase", ["pre-prepared", "prepared", "committed-at-one", "none"])
def test_a_view_change_at_any_phase_of_a_window_of_max_size_batches(cluster_cls, phase):
    c = cluster_cls(**FAST, max_pending_bytes=256 * 1024 * 1024)
    cfg = c.config
    per_batch = cfg.batch_max_bytes // (60 * 1024 + 160)
    reqs = [c.request(k, 1, op=b"v" * (60 * 1024)) for k in range(per_batch * 8)]
    c.tamper = _drop_at(phase)
    for r in reqs:
        c.step(0, ClientRequest(r))
        c.step(1, ClientRequest(r))
    c.deliver_all()
    c.crash(0)  # the view change comes now, whatever the slots reached
    assert c.run_until(lambda: c.all_executed(reqs, [1, 2, 3]), timeout_ms=30_000), phase
    for m in c.sent:
        if isinstance(m, ViewChange):
            assert len(encode(m)) <= view_change_bytes(cfg.n, cfg.watermark_window)
        elif isinstance(m, NewView):
            assert len(encode(m)) <= new_view_bytes(cfg.n, cfg.watermark_window)
    assert max(r.view for r in c.replicas[1:]) >= 1
    c.assert_agreement()
