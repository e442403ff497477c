"""Liveness without client traffic (issue 27, consensus/phases/liveness.py): heartbeat blocks
keep coming after faults heal although no request timer runs."""

from __future__ import annotations

from consensus import Checkpoint, Prepare, PrePrepare, Receive, Replica, Tick
from consensus.codec import batch_digest


def _stale_heartbeat(cl, seq: int = 1, time_ms: int = 1_000) -> PrePrepare:
    pp = PrePrepare(0, seq, time_ms, (), batch_digest(time_ms, ()), 0)
    return cl.auth(0).sign(pp)


def _sent(out, kind) -> list:
    return [s.message for s in out.send if isinstance(s.message, kind)]


def test_a_stale_pre_prepare_is_voted_once_f_other_backups_vouch_for_it(cluster_cls):
    cl = cluster_cls(n=4, heartbeat_ms=1_000)
    r2 = Replica(cl.config, 2, cl.auth(2))
    r2.step(Tick(10_000))
    pp = _stale_heartbeat(cl)
    out = r2.step(Receive(0, pp))
    assert not _sent(out, Prepare)  # stale and nobody vouches: not voted, but held
    assert r2.dropped["pre-prepare-stale"] == 1
    vouch = cl.auth(1).sign(Prepare(0, 1, pp.digest, 1))
    out = r2.step(Receive(1, vouch))
    mine = _sent(out, Prepare)
    assert [(p.replica, p.seq, p.digest) for p in mine] == [(2, 1, pp.digest)]


def test_a_prepare_for_another_batch_does_not_vouch_for_a_stale_pre_prepare(cluster_cls):
    cl = cluster_cls(n=4, heartbeat_ms=1_000)
    r2 = Replica(cl.config, 2, cl.auth(2))
    r2.step(Tick(10_000))
    r2.step(Receive(0, _stale_heartbeat(cl)))
    other = batch_digest(999, ())
    out = r2.step(Receive(1, cl.auth(1).sign(Prepare(0, 1, other, 1))))
    assert not _sent(out, Prepare)


def test_a_restarted_backup_votes_the_heartbeat_that_went_stale_while_it_was_down(cluster_cls):
    cl = cluster_cls(n=4, heartbeat_ms=1_000)
    cl.crash(2)
    cl.crash(3)
    cl.run_until(lambda: cl.now >= 12_000)  # 0 and 1 hold heartbeat 1, no quorum
    assert not cl.executed[0]
    cl.restart(2)
    assert cl.run_until(lambda: 1 in cl.executed[2], timeout_ms=6_000)
    assert cl.executed[2][1].view == 0  # the same view: no view change was needed
    assert all(not r.view_change_reasons for r in cl.replicas[:3])
    cl.assert_agreement()


def test_a_replica_that_missed_the_checkpoints_gets_them_resent_and_moves_its_window(cluster_cls):
    cl = cluster_cls(n=4, heartbeat_ms=200, checkpoint_interval=4, watermark_window=8)
    cl.tamper = lambda s, to, m: [] if to == 3 and isinstance(m, Checkpoint) else None
    assert cl.run_until(lambda: cl.replicas[0].stable_seq >= 4, timeout_ms=10_000)
    assert cl.replicas[3].stable_seq == 0
    cl.tamper = None
    assert cl.run_until(lambda: cl.replicas[3].stable_seq >= 4, timeout_ms=2_000)
    top = max(cl.executed[0])
    assert cl.run_until(lambda: all(max(cl.executed[i]) > top + 8 for i in range(4)),
                        timeout_ms=10_000)
    cl.assert_agreement()


def test_a_crashed_primary_of_an_idle_cluster_is_replaced_without_client_traffic(cluster_cls):
    cl = cluster_cls(n=4, heartbeat_ms=1_000)
    cl.crash(0)
    assert cl.run_until(lambda: all(cl.executed[i] for i in (1, 2, 3)), timeout_ms=10_000)
    assert all(cl.replicas[i].view == 1 for i in (1, 2, 3))
    started = [cl.replicas[i].view_change_reasons for i in (1, 2, 3)]
    assert all(r["primary-silent"] + r["idle-timeout"] + r["f+1-joined"] == 1 for r in started)
    cl.assert_agreement()


def test_a_live_primary_whose_blocks_never_arrive_is_replaced_by_the_idle_watchdog(cluster_cls):
    # its STATUS keeps flowing, so the primary watch holds; only the idle watchdog sees no block
    cl = cluster_cls(n=4, heartbeat_ms=1_000)
    cl.tamper = lambda s, to, m: [] if s == 0 and isinstance(m, PrePrepare) else None
    assert cl.run_until(lambda: all(cl.executed[i] for i in (1, 2, 3)), timeout_ms=15_000)
    reasons = [cl.replicas[i].view_change_reasons for i in (1, 2, 3)]
    assert all(r["primary-silent"] == 0 for r in reasons)
    assert sum(r["idle-timeout"] for r in reasons) >= 2  # f + 1 suspected it on their own
    cl.assert_agreement()


def test_a_replica_cut_off_from_a_quorum_does_not_start_an_idle_view_change(cluster_cls):
    cl = cluster_cls(n=4, heartbeat_ms=1_000)
    cl.tamper = lambda s, to, m: [] if 3 in (s, to) else None
    cl.run_until(lambda: cl.now >= 15_000, dt=50)
    r3 = cl.replicas[3]
    assert (r3.view, r3.in_view_change, dict(r3.view_change_reasons)) == (0, False, {})
    assert len(cl.executed[0]) >= 10  # the others kept committing heartbeats
    cl.tamper = None
    top = max(cl.executed[0])
    assert cl.run_until(lambda: max(cl.executed[3], default=0) > top, timeout_ms=5_000)
    cl.assert_agreement()
