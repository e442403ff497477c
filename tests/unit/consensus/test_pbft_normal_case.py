"""Normal-case operation (Castro-Liskov §4.2): pre-prepare, prepare, commit, in-order execution."""

import msgspec
import pytest

from consensus import (
    ClientRequest,
    Commit,
    Duplicate,
    Forward,
    Prepare,
    PrePrepare,
    Receive,
    Rejected,
    Tick,
    batch_digest,
    chain_digest,
)


@pytest.mark.parametrize("n", [4, 7, 10])
def test_every_replica_executes_every_request_in_the_same_order(cluster_cls, n):
    c = cluster_cls(n=n)
    reqs = [c.request(k % 3, k) for k in range(30)]
    for k, r in enumerate(reqs):
        c.submit(r, to=k % n)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=1_000)
    c.assert_agreement()
    orders = {tuple(c.executed_keys(i)) for i in range(n)}
    assert len(orders) == 1
    assert len(next(iter(orders))) == 30


def test_execute_carries_commit_certificate_and_chained_hashes(cluster_cls):
    c = cluster_cls()
    c.submit(c.request(0, 1))
    c.submit(c.request(0, 2))
    assert c.run_until(lambda: c.all_executed([c.request(0, 1), c.request(0, 2)]))
    log = c.executed[1]
    prev = bytes(32)
    for s in sorted(log):
        ex = log[s]
        assert ex.prev_hash == prev
        assert ex.block_hash == chain_digest(prev, s, ex.digest)
        assert ex.digest == batch_digest(ex.pre_prepare.time_ms, ex.pre_prepare.requests)
        assert len({cm.replica for cm in ex.commits}) >= c.config.quorum
        assert all(cm.digest == ex.digest and cm.seq == s for cm in ex.commits)
        prev = ex.block_hash


def test_block_time_strictly_increases_and_follows_the_primary(cluster_cls):
    c = cluster_cls(batch_max=1)
    reqs = [c.request(0, k) for k in range(5)]
    c.tick(100)
    for r in reqs:
        c.submit(r)  # all in the same millisecond: the primary still proposes increasing times
    assert c.run_until(lambda: c.all_executed(reqs))
    times = [c.executed[2][s].time_ms for s in sorted(c.executed[2])]
    assert times == sorted(set(times))
    assert times[0] >= 100


def test_commit_needs_2f_plus_1_matching(cluster_cls):
    # with two replicas down (f=1, n=4) only 2 commits exist: nothing may execute
    c = cluster_cls()
    c.crash(2)
    c.crash(3)
    c.submit(c.request(0, 1))
    c.run_until(lambda: False, timeout_ms=200)
    assert all(not c.executed[i] for i in range(4))
    # with one down, 3 = 2f+1 commit
    c = cluster_cls()
    c.crash(3)
    c.submit(c.request(0, 1))
    assert c.run_until(lambda: c.all_executed([c.request(0, 1)]), timeout_ms=500)


def test_backup_accepts_only_one_pre_prepare_per_view_and_seq(cluster_cls):
    c = cluster_cls()
    primary = c.replicas[0]
    backup = c.replicas[1]
    a = c.auth(0)
    r1, r2 = c.request(0, 1), c.request(0, 2)
    pp1 = a.sign(PrePrepare(0, 1, 0, (r1,), batch_digest(0, (r1,)), 0))
    pp2 = a.sign(PrePrepare(0, 1, 0, (r2,), batch_digest(0, (r2,)), 0))
    out1 = backup.step(Receive(0, pp1))
    assert [type(s.message) for s in out1.send] == [Prepare]
    out2 = backup.step(Receive(0, pp2))
    # no second PREPARE; only the evidence transaction (the proof) relayed to the others
    assert [type(s.message) for s in out2.send] == [Forward]
    assert [e.kind for e in out2.evidence] == ["equivocation"]
    assert {m.digest for m in out2.evidence[0].messages} == {pp1.digest, pp2.digest}
    assert primary.view == 0


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda pp: msgspec.structs.replace(pp, digest=bytes(32)), "digest"),
        (lambda pp: msgspec.structs.replace(pp, time_ms=10_000), "time"),
    ],
)
def test_backup_rejects_pre_prepare_with_bad_digest_or_time(cluster_cls, mutate, reason):
    c = cluster_cls()
    a = c.auth(0)
    r1 = c.request(0, 1)
    pp = mutate(PrePrepare(0, 1, 0, (r1,), batch_digest(0, (r1,)), 0))
    if reason == "time":
        pp = msgspec.structs.replace(pp, digest=batch_digest(pp.time_ms, pp.requests))
    out = c.replicas[1].step(Receive(0, a.sign(pp)))
    assert out.send == []
    assert out.evidence and reason in out.evidence[0].reason


def test_a_late_pre_prepare_is_dropped_without_blaming_the_primary(cluster_cls):
    # Frames queued for a restarting or partitioned backup arrive late: not misbehaviour.
    c = cluster_cls()
    backup = c.replicas[1]
    cfg = backup.config
    backup.step(Tick(cfg.max_clock_skew_ms + cfg.timeout_request_ms + 1_000))
    r1 = c.request(0, 1)
    pp = c.auth(0).sign(PrePrepare(0, 1, 0, (r1,), batch_digest(0, (r1,)), 0))
    out = backup.step(Receive(0, pp))
    assert out.send == [] and out.evidence == []
    assert backup.dropped["pre-prepare-stale"] == 1


def test_pre_prepare_from_a_backup_or_forged_signature_is_evidence(cluster_cls):
    c = cluster_cls()
    r1 = c.request(0, 1)
    pp = PrePrepare(0, 1, 0, (r1,), batch_digest(0, (r1,)), 2)
    out = c.replicas[1].step(Receive(2, c.auth(2).sign(pp)))
    assert [e.kind for e in out.evidence] == ["invalid-message"]
    forged = msgspec.structs.replace(c.auth(2).sign(pp), replica=0)
    out = c.replicas[1].step(Receive(0, forged))
    assert [e.kind for e in out.evidence] == ["bad-signature"]
    out = c.replicas[1].step(Receive(2, c.auth(0).sign(msgspec.structs.replace(pp, replica=0))))
    assert [e.kind for e in out.evidence] == ["invalid-message"]  # replica field != sender


def test_conflicting_prepares_from_one_replica_are_equivocation(cluster_cls):
    c = cluster_cls()
    a2 = c.auth(2)
    b = c.replicas[1]
    b.step(Receive(2, a2.sign(Prepare(0, 1, b"a" * 32, 2))))
    out = b.step(Receive(2, a2.sign(Prepare(0, 1, b"b" * 32, 2))))
    assert [e.kind for e in out.evidence] == ["equivocation"]
    out = b.step(Receive(2, a2.sign(Commit(0, 1, b"a" * 32, 2))))
    assert out.evidence == []


def test_duplicate_request_is_answered_not_executed_twice(cluster_cls):
    c = cluster_cls()
    r = c.request(0, 7)
    c.submit(r)
    assert c.run_until(lambda: c.all_executed([r]))
    out = c.replicas[1].step(ClientRequest(r))
    assert out.reply == [Duplicate(r.client_id, 7)]
    assert out.send == []
    c.submit(r, to=2)
    c.run_until(lambda: False, timeout_ms=100)
    assert sum(k == (r.client_id, 7) for k in c.executed_keys(0)) == 1


def test_duplicates_inside_committed_batches_are_skipped_deterministically(cluster_cls):
    c = cluster_cls()
    r = c.request(0, 1)
    a = c.auth(0)
    # a (faulty or re-proposing) primary puts the same request into two batches
    for seq in (1, 2):
        pp = a.sign(PrePrepare(0, seq, 0, (r,), batch_digest(0, (r,)), 0))
        for i in (1, 2, 3):
            c.apply(i, c.replicas[i].step(Receive(0, pp)))
    c.deliver_all()
    for i in (1, 2, 3):
        ex1, ex2 = c.executed[i][1], c.executed[i][2]
        assert ex1.requests == (r,)
        assert ex2.requests == () and ex2.skipped == ((r, "duplicate"),)
    c.assert_agreement()


def test_pipelined_client_requests_both_execute(cluster_cls):
    c = cluster_cls(batch_max=1)
    r5, r6 = c.request(0, 5), c.request(0, 6)
    # 6 is proposed (and commits) first
    c.submit(r6)
    c.submit(r5)
    assert c.run_until(lambda: c.all_executed([r5, r6]))
    assert c.executed_keys(3) == [(r6.client_id, 6), (r5.client_id, 5)]


def test_request_seq_below_dedup_window_is_rejected(cluster_cls):
    c = cluster_cls(dedup_window=10)
    r = c.request(0, 100)
    c.submit(r)
    assert c.run_until(lambda: c.all_executed([r]))
    old = c.request(0, 50)
    out = c.replicas[0].step(ClientRequest(old))
    assert out.reply == [Rejected(old, "request_seq too old")]
    ok = c.request(0, 95)
    out = c.replicas[1].step(ClientRequest(ok))  # accepted: relayed to the others
    assert out.reply == [] and len(out.send) == 1


def test_bad_client_requests_are_rejected_with_a_reason(cluster_cls):
    c = cluster_cls(max_request_bytes=10)
    rep = c.replicas[1]
    big = c.request(0, 1, op=b"x" * 11)
    assert "exceeds" in rep.step(ClientRequest(big)).reply[0].reason
    forged = msgspec.structs.replace(c.request(0, 2), op=b"other")
    assert rep.step(ClientRequest(forged)).reply == [Rejected(forged, "bad client signature")]
    # a forwarded forged request is evidence against the forwarder
    fwd = c.auth(2).sign(Forward((forged,), 2))
    out = rep.step(Receive(2, fwd))
    assert [e.kind for e in out.evidence] == ["invalid-message"]
    assert rep.pending_count == 0


def test_other_content_for_a_pending_request_seq_is_refused_not_dropped(cluster_cls):
    c = cluster_cls()
    rep = c.replicas[1]
    first = c.request(0, 7, op=b"first")
    assert rep.step(ClientRequest(first)).reply == []
    assert rep.step(ClientRequest(first)).reply == []  # the same tx again: nothing to say
    other = c.request(0, 7, op=b"other")
    (refused,) = rep.step(ClientRequest(other)).reply
    assert isinstance(refused, Rejected) and refused.request == other
    assert refused.reason.startswith("conflicting request")
    assert rep.pending_count == 1


def test_pending_pool_is_bounded(cluster_cls):
    c = cluster_cls(max_pending_requests=2)
    rep = c.replicas[1]
    outs = [rep.step(ClientRequest(c.request(0, k))) for k in range(3)]
    assert outs[2].reply == [Rejected(c.request(0, 2), "pool full")]
    assert rep.pending_count == 2


def test_expired_request_is_rejected_or_skipped(cluster_cls):
    c = cluster_cls()
    c.submit(c.request(0, 1))
    assert c.run_until(lambda: c.all_executed([c.request(0, 1)]))
    late = c.request(1, 1, valid_until=1)
    out = c.replicas[0].step(ClientRequest(late))
    assert out.reply == [Rejected(late, "expired")]
    # inside an agreed batch at a seq past valid_until it is skipped, not executed
    a = c.auth(0)
    pp = a.sign(PrePrepare(0, 2, c.now, (late,), batch_digest(c.now, (late,)), 0))
    for i in (1, 2, 3):
        c.apply(i, c.replicas[i].step(Receive(0, pp)))
    c.deliver_all()
    assert c.executed[1][2].skipped == ((late, "expired"),)


def test_client_request_is_forwarded_so_backups_start_timers(cluster_cls):
    c = cluster_cls()  # forward_relay_ms = 500 by default
    b = c.replicas[2]
    assert b.config.forward_relay_ms == 500
    out = b.step(ClientRequest(c.request(0, 1)))
    # PBFT's relay: to the primary at once ...
    assert len(out.send) == 1 and isinstance(out.send[0].message, Forward)
    assert out.send[0].to == 0
    assert b.health()["request_timer_deadline_ms"] is not None
    # ... and to every replica if still pending forward_relay_ms later (the primary is down)
    relay = min(b.config.forward_relay_ms, b.config.timeout_request_ms // 4)
    out = b.step(Tick(c.now + relay - 1))
    assert not any(isinstance(s.message, Forward) for s in out.send)
    out = b.step(Tick(c.now + relay))
    fwd = [s for s in out.send if isinstance(s.message, Forward)]
    assert len(fwd) == 1 and fwd[0].to is None
    out = c.replicas[1].step(Receive(2, fwd[0].message))
    assert c.replicas[1].health()["request_timer_deadline_ms"] is not None


def test_a_request_the_primary_proposed_is_not_relayed_while_its_batch_runs(cluster_cls):
    c = cluster_cls()
    c.tamper = lambda s, t, m: [] if isinstance(m, (Prepare, Commit)) else None  # stall it
    r = c.request(0, 1)
    c.submit(r, to=2)
    start = len(c.sent)
    relay = min(c.config.forward_relay_ms, c.config.timeout_request_ms // 4)
    c.run_until(lambda: False, timeout_ms=relay + 50)
    pps = [m for m in c.sent if isinstance(m, PrePrepare)]
    assert pps and r in pps[0].requests and not c.executed[2]
    assert not any(isinstance(m, Forward) for m in c.sent[start:])
    # without the pre-prepare (the primary silent) the same request is relayed
    c2 = cluster_cls()
    c2.down.add(0)
    c2.submit(r, to=2)
    start = len(c2.sent)
    c2.run_until(lambda: False, timeout_ms=relay + 50)
    assert any(isinstance(m, Forward) for m in c2.sent[start:])


def _held_forwards(c):
    """Hold every Forward to the primary (the test delivers them when it likes)."""
    held = []

    def tamper(sender, to, msg):
        if isinstance(msg, Forward) and to == 0:
            held.append(msg)
            return []
        return None
    c.tamper = tamper
    return held


def _relayed(c, start, req):
    return any(isinstance(m, Forward) and req in m.requests for m in c.sent[start:])


def test_a_request_queued_behind_a_working_primary_waits_then_is_relayed(cluster_cls):
    c = cluster_cls()
    held = _held_forwards(c)
    r1, r2 = c.request(0, 1), c.request(0, 2)
    c.submit(r1, to=2)
    c.submit(r2, to=2)  # forwarded after r1: the primary will batch it after r1
    start = len(c.sent)
    relay = min(c.config.forward_relay_ms, c.config.timeout_request_ms // 4)
    c.run_until(lambda: False, timeout_ms=relay - 50)
    c.step(0, Receive(2, held[0]))  # the primary gets r1 late and proposes it
    c.deliver_all()
    assert c.run_until(lambda: c.all_executed([r1]), timeout_ms=100)
    # r2 is due now, but the primary proposed r1 (sent before r2) under relay ms ago
    c.run_until(lambda: False, timeout_ms=100)
    assert not _relayed(c, start, r2)
    # ... and once the primary has proposed none of ours for relay ms, r2 goes to everyone
    assert c.run_until(lambda: _relayed(c, start, r2), timeout_ms=relay)
    assert not _relayed(c, start, r1)


def test_a_request_the_primary_skipped_is_relayed_when_due(cluster_cls):
    c = cluster_cls()
    held = _held_forwards(c)
    r1, r2 = c.request(0, 1), c.request(0, 2)
    c.submit(r1, to=2)
    c.submit(r2, to=2)
    start = len(c.sent)
    relay = min(c.config.forward_relay_ms, c.config.timeout_request_ms // 4)
    c.run_until(lambda: False, timeout_ms=relay - 50)
    c.step(0, Receive(2, held[1]))  # the primary proposes r2 only: r1 was skipped
    c.deliver_all()
    assert c.run_until(lambda: c.all_executed([r2]), timeout_ms=20)
    assert not _relayed(c, start, r1)  # not due yet
    # due: relayed at once, although the primary proposed one of ours just now
    assert c.run_until(lambda: _relayed(c, start, r1), timeout_ms=60)


def test_relay_off_forwarding_reaches_every_replica_at_once(cluster_cls):
    c = cluster_cls(forward_relay_ms=0)
    out = c.replicas[2].step(ClientRequest(c.request(0, 1)))
    assert len(out.send) == 1 and isinstance(out.send[0].message, Forward)
    assert out.send[0].to is None


def test_a_primary_does_not_forward_and_an_executed_request_is_never_relayed(cluster_cls):
    c = cluster_cls(forward_relay_ms=500)
    out = c.replicas[0].step(ClientRequest(c.request(0, 1)))
    assert not any(isinstance(s.message, Forward) for s in out.send)
    r = c.request(0, 2)
    c.submit(r, to=2)
    assert c.run_until(lambda: c.all_executed([r]))
    b = c.replicas[2]
    out = b.step(Tick(c.now + b.config.timeout_request_ms))
    assert not any(isinstance(s.message, Forward) for s in out.send)


def test_primary_batches_up_to_batch_max_or_after_batch_delay(cluster_cls):
    c = cluster_cls(batch_max=3, batch_delay_ms=50, max_in_flight=4)  # seq 1 still runs
    p = c.replicas[0]
    for k in range(2):
        out = p.step(ClientRequest(c.request(0, k)))
        assert not any(isinstance(s.message, PrePrepare) for s in out.send)
    out = p.step(ClientRequest(c.request(0, 2)))  # third request fills the batch
    pps = [s.message for s in out.send if isinstance(s.message, PrePrepare)]
    assert len(pps) == 1 and len(pps[0].requests) == 3
    p.step(ClientRequest(c.request(0, 3)))
    out = p.step(Tick(49))
    assert not any(isinstance(s.message, PrePrepare) for s in out.send)
    assert out.next_deadline_ms == 50
    out = p.step(Tick(50))
    pps = [s.message for s in out.send if isinstance(s.message, PrePrepare)]
    assert len(pps) == 1 and len(pps[0].requests) == 1 and pps[0].seq == 2


def test_primary_keeps_several_batches_in_flight_up_to_the_high_watermark(cluster_cls):
    c = cluster_cls(batch_max=1, checkpoint_interval=4, watermark_window=8)
    p = c.replicas[0]
    seqs = []
    for k in range(12):
        out = p.step(ClientRequest(c.request(0, k)))
        seqs += [s.message.seq for s in out.send if isinstance(s.message, PrePrepare)]
    assert seqs == list(range(1, 9))
    assert p.health()["unproposed_requests"] == 4


def test_idle_primary_sends_heartbeat_batches(cluster_cls):
    c = cluster_cls(heartbeat_ms=100)
    assert c.run_until(lambda: len(c.executed[1]) >= 3, timeout_ms=1_000)
    assert all(ex.requests == () for ex in c.executed[1].values())
    assert c.replicas[1].health()["request_timer_deadline_ms"] is None
    times = [c.executed[1][s].time_ms for s in sorted(c.executed[1])]
    assert times == sorted(times) and times[1] - times[0] >= 100


def test_every_signed_vote_is_persisted_in_the_output_that_sends_it(cluster_cls):
    c = cluster_cls()
    seen = []

    def check(rid, out):
        votes = {id(r.message) for r in out.persist if hasattr(r, "message")}
        for s in out.send:
            if isinstance(s.message, PrePrepare | Prepare | Commit):
                seen.append(s.message)
                assert id(s.message) in votes or s.message in [
                    r.message for r in c.records[rid] if hasattr(r, "message")
                ]

    orig = c.apply

    def apply(rid, out):
        check(rid, out)
        orig(rid, out)

    c.apply = apply
    c.submit(c.request(0, 1))
    assert c.run_until(lambda: c.all_executed([c.request(0, 1)]))
    assert len(seen) >= 1 + 3 + 4
