"""The snapshot catch-up phase (consensus/phases/snapshot.py), sans-I/O: who starts a fetch,
which pages reach the shell, how verdicts drive the next page, serving rates, and the one
check of a roots certificate."""

from __future__ import annotations

from consensus import (
    BlocksPruned,
    CheckSnapshotChunk,
    FetchBlocks,
    FetchedBlocks,
    FetchSnapshot,
    Receive,
    ServeSnapshot,
    SnapshotChecked,
    SnapshotChunk,
    SnapshotRead,
    StateVote,
    Status,
    Tick,
)
from consensus.phases.snapshot import SNAPSHOT_IDLE_INTERVALS, verify_state_certificate

FAST = dict(status_interval_ms=100)


def _behind(c, rid: int = 1):
    """Replica `rid` fresh, told by replica 0 that it is far ahead, so it fetches blocks."""
    rep = c.replicas[rid]
    rep.step(Receive(0, c.auth(0).sign(Status(0, False, 500, 496, 0))))
    for t in range(0, 50, 10):  # within one status interval: only peer 2 is asked
        rep.step(Tick(t))
    assert set(rep._fetch_asked) == {2}
    return rep


def _page(c, sender: int, height: int, after: bytes, more: bool = True) -> SnapshotChunk:
    return c.auth(sender).sign(SnapshotChunk(height, after, ((b"S1", b"v"),), b"p", more, None,
                                             b"", (), sender))


def _sent(out, kind):
    return [(s.to, s.message) for s in out.send if isinstance(s.message, kind)]


def test_blocks_pruned_from_an_asked_peer_starts_one_snapshot_fetch(cluster_cls):
    c = cluster_cls(**FAST)
    rep = _behind(c)
    out = rep.step(Receive(3, c.auth(3).sign(BlocksPruned(400, 496, 3))))
    assert _sent(out, FetchSnapshot) == [] and rep.dropped["blocks-pruned-unasked"] == 1
    out = rep.step(Receive(2, c.auth(2).sign(BlocksPruned(400, 496, 2))))
    [(to, fs)] = _sent(out, FetchSnapshot)
    assert (to, fs.height, fs.after_key) == (2, 0, b"")
    # a second answer while one fetch runs starts nothing
    out = rep.step(Receive(0, c.auth(0).sign(BlocksPruned(400, 496, 0))))
    assert _sent(out, FetchSnapshot) == []


def test_a_peer_that_still_has_the_blocks_or_serves_no_snapshot_starts_nothing(cluster_cls):
    c = cluster_cls(**FAST)
    rep = _behind(c)
    out = rep.step(Receive(2, c.auth(2).sign(BlocksPruned(1, 496, 2))))
    assert _sent(out, FetchSnapshot) == []
    out = rep.step(Receive(2, c.auth(2).sign(BlocksPruned(400, 0, 2))))
    assert _sent(out, FetchSnapshot) == [] and rep.dropped["pruned-without-snapshot"] == 1


def test_pages_go_to_the_shell_in_order_and_verdicts_drive_the_fetch(cluster_cls):
    c = cluster_cls(**FAST)
    rep = _behind(c)
    rep.step(Receive(2, c.auth(2).sign(BlocksPruned(400, 496, 2))))
    out = rep.step(Receive(3, _page(c, 3, 496, b"")))  # not the peer asked
    assert out.snapshot == [] and rep.dropped["snapshot-chunk-unasked"] == 1
    out = rep.step(Receive(2, _page(c, 2, 496, b"x")))  # not the page asked
    assert out.snapshot == []
    out = rep.step(Receive(2, _page(c, 2, 496, b"")))
    [act] = out.snapshot
    assert isinstance(act, CheckSnapshotChunk) and act.sender == 2
    out = rep.step(Receive(2, _page(c, 2, 496, b"")))  # while the shell checks: dropped
    assert out.snapshot == []
    out = rep.step(SnapshotChecked(2, 496, b"S2"))
    [(to, fs)] = _sent(out, FetchSnapshot)
    assert (to, fs.height, fs.after_key) == (2, 496, b"S2")
    out = rep.step(Receive(2, _page(c, 2, 497, b"S2")))  # another height: dropped
    assert out.snapshot == []
    out = rep.step(Receive(2, _page(c, 2, 496, b"S2")))
    assert len(out.snapshot) == 1
    out = rep.step(SnapshotChecked(2, 496, None, "snapshot page: proof does not hash"))
    assert [(e.kind, e.replica) for e in out.evidence] == [("bad-snapshot", 2)]
    assert rep._snap is None


def test_a_silent_peer_is_given_up_after_some_status_intervals(cluster_cls):
    c = cluster_cls(**FAST)
    rep = _behind(c)
    rep.step(Receive(2, c.auth(2).sign(BlocksPruned(400, 496, 2))))
    for t in range(50, 50 + (SNAPSHOT_IDLE_INTERVALS + 2) * 100, 10):
        rep.step(Tick(t))
    assert rep._snap is None and rep.dropped["snapshot-fetch-abandoned"] == 1


def test_serving_is_rate_limited_per_peer_and_pages_are_signed(cluster_cls):
    c = cluster_cls(**FAST)
    rep = c.replicas[0]
    rep.step(Tick(1000))
    outs = [rep.step(Receive(3, c.auth(3).sign(FetchSnapshot(0, b"", 3)))) for _ in range(10)]
    served = [a for o in outs for a in o.snapshot]
    assert 1 <= len(served) <= 4 and all(isinstance(a, ServeSnapshot) for a in served)
    assert rep.dropped["snapshot-rate-limited"] >= 6
    page = SnapshotChunk(16, b"", (), b"", False, None, b"", (), 0)
    out = rep.step(SnapshotRead(3, page))
    [(to, msg)] = _sent(out, SnapshotChunk)
    assert to == 3 and c.auth(1).verify(msg)


def test_a_fetch_below_the_base_is_answered_blocks_pruned(cluster_cls):
    c = cluster_cls(**FAST)
    rep = c.replicas[0]
    rep.step(Tick(1000))
    rep._last_executed = 900  # as if it had executed (and pruned) that far
    out = rep.step(Receive(3, c.auth(3).sign(FetchBlocks(1, 64, 3))))
    [f] = out.fetch
    out = rep.step(FetchedBlocks(f.to, (), 800, 896))
    [(to, msg)] = _sent(out, BlocksPruned)
    assert (to, msg.base, msg.snapshot_seq) == (3, 800, 896)


def test_a_state_certificate_needs_2f_plus_1_distinct_valid_votes_on_the_same_roots(
        cluster_cls):
    c = cluster_cls()
    cfg, auth = c.config, c.auth(0)
    bh, root, res = b"b" * 32, b"r" * 32, b"t" * 32
    votes = tuple(c.auth(i).sign(StateVote(16, bh, root, res, i)) for i in range(3))
    assert verify_state_certificate(cfg, auth, 16, bh, root, votes) is None
    assert "needs 3" in verify_state_certificate(cfg, auth, 16, bh, root, votes[:2])
    assert "duplicate" in verify_state_certificate(cfg, auth, 16, bh, root,
                                                   votes[:2] + votes[:1])
    assert "other roots" in verify_state_certificate(cfg, auth, 16, bh, b"x" * 32, votes)
    other = c.auth(2).sign(StateVote(16, bh, root, b"u" * 32, 2))
    assert "results_root" in verify_state_certificate(cfg, auth, 16, bh, root,
                                                      votes[:2] + (other,))
    forged = StateVote(16, bh, root, res, 2, votes[1].sig)
    assert "signature" in verify_state_certificate(cfg, auth, 16, bh, root,
                                                   votes[:2] + (forged,))
