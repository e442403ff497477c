"""View changes (Castro-Liskov §4.4): timers, VIEW-CHANGE/NEW-VIEW, the f+1 join rule, backoff."""

import msgspec

from consensus import (
    ClientRequest,
    Config,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Receive,
    Tick,
    ViewChange,
    batch_digest,
    build_new_view,
)
from consensus.bodies import lacks_body
from consensus.view_change import NULL_BATCH_TIME_MS, backoff_ms
from testnet.checkers import find_equivocations

FAST = {"timeout_request_ms": 200, "timeout_view_change_ms": 200, "status_interval_ms": 50}


def test_silent_primary_leads_to_a_view_change_and_all_requests_execute(cluster_cls):
    c = cluster_cls(**FAST)
    c.crash(0)
    reqs = [c.request(0, k) for k in range(10)]
    for k, r in enumerate(reqs):
        c.submit(r, to=1 + k % 3)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=5_000)
    assert {c.replicas[i].view for i in (1, 2, 3)} == {1}
    assert not any(c.replicas[i].in_view_change for i in (1, 2, 3))
    c.assert_agreement()
    assert find_equivocations(c.sent) == []
    started = [c.replicas[i].health()["view_change"]["started"] for i in (1, 2, 3)]
    # the silent primary is suspected by its silence (primary_watch.py) or by request timers;
    # nobody times out a view change
    assert sum(s.get("request-timeout", 0) + s.get("primary-silent", 0) for s in started) >= 1
    assert all(set(s) <= {"request-timeout", "primary-silent", "f+1-joined"}
               and sum(s.values()) == 1 for s in started)


def test_view_change_carries_prepared_batches_into_the_new_view(cluster_cls):
    c = cluster_cls(**FAST)
    r = c.request(0, 1)
    # commits never arrive: the batch prepares everywhere but commits nowhere
    c.tamper = lambda s, t, m: [] if type(m).__name__ == "Commit" and m.view == 0 else None
    c.submit(r)
    c.tick(5)
    assert all(c.replicas[i].health()["in_flight"] for i in range(4))
    pp0 = c.replicas[1]._log.get(0, 1).pre_prepare
    assert c.run_until(lambda: c.all_executed([r]), timeout_ms=5_000)
    # the same batch (digest, time) executes at seq 1 in view 1
    for i in range(4):
        ex = c.executed[i][1]
        assert ex.view == 1 and ex.digest == pp0.digest and ex.requests == (r,)
    c.assert_agreement()


def _equivocate(c, victims):
    """Primary 0 sends a different (validly signed) batch to `victims` in view 0."""
    a0 = c.auth(0)

    def tamper(sender, to, m):
        if sender == 0 and isinstance(m, PrePrepare) and m.view == 0 and to in victims:
            t = m.time_ms + 1
            return [a0.sign(msgspec.structs.replace(m, time_ms=t,
                                                    digest=batch_digest(t, m.requests)))]
        return None

    return tamper


def test_equivocating_primary_split_in_halves_causes_no_divergence(cluster_cls):
    c = cluster_cls(n=7, **FAST)
    c.tamper = _equivocate(c, victims={4, 5, 6})
    reqs = [c.request(0, k) for k in range(5)]
    for k, r in enumerate(reqs):
        c.submit(r, to=k % 7)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=10_000)
    c.assert_agreement()
    assert all(c.replicas[i].view >= 1 for i in range(1, 7))


def test_equivocating_primary_with_a_majority_half_commits_and_the_rest_sync(cluster_cls):
    c = cluster_cls(**FAST)
    c.tamper = _equivocate(c, victims={3})
    reqs = [c.request(0, k) for k in range(3)]
    for r in reqs:
        c.submit(r, to=1)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=5_000)
    c.assert_agreement()


def test_f_plus_1_join_rule_moves_a_replica_to_the_smallest_certain_view(cluster_cls):
    c = cluster_cls(**FAST)
    r3 = c.replicas[3]

    def vc(i, view):
        return c.auth(i).sign(ViewChange(view, 0, bytes(32), (), (), i))

    r3.step(Receive(1, vc(1, 5)))
    assert (r3.view, r3.in_view_change) == (0, False)  # f VIEW-CHANGEs are not enough
    out = r3.step(Receive(2, vc(2, 9)))
    assert (r3.view, r3.in_view_change) == (5, True)
    sent = [s.message for s in out.send if isinstance(s.message, ViewChange)]
    assert [m.new_view for m in sent] == [5]


def test_a_replica_that_cannot_receive_does_not_force_view_changes(cluster_cls):
    c = cluster_cls(**FAST)
    c.tamper = lambda s, t, m: [] if t == 3 else None  # replica 3 hears nothing
    reqs = [c.request(0, k) for k in range(5)]
    for r in reqs:
        c.submit(r, to=3)
    assert c.run_until(lambda: c.all_executed(reqs, [0, 1, 2]), timeout_ms=1_000)
    c.run_until(lambda: False, timeout_ms=3_000)
    assert c.replicas[3].view == 1 and c.replicas[3].in_view_change  # it asked, alone
    assert [c.replicas[i].view for i in (0, 1, 2)] == [0, 0, 0]
    # it never got 2f+1 VIEW-CHANGEs, so its view-change timer never ran: no endless climb
    assert c.replicas[3].health()["view_change"]["deadline_ms"] is None


def test_view_change_timeout_doubles_and_is_capped(cluster_cls):
    assert [backoff_ms(Config(), k) for k in range(7)] == [1000, 2000, 4000, 8000, 16000, 30000,
                                                           30000]
    c = cluster_cls(timeout_request_ms=100, timeout_view_change_ms=100, timeout_max_ms=500,
                    status_interval_ms=50)
    c.crash(0)
    c.tamper = lambda s, t, m: [] if isinstance(m, NewView) else None  # every new view fails
    c.submit(c.request(0, 1), to=2)
    entered = {}
    prev = None
    deadline = c.now + 8_000
    while c.now < deadline:
        c.tick(5)
        v = c.replicas[2].view
        if v != prev:
            entered[v] = c.now
            prev = v
    views = sorted(entered)
    gaps = [entered[b] - entered[a] for a, b in zip(views[1:], views[2:], strict=False)]
    assert len(gaps) >= 5
    assert gaps == sorted(gaps)  # never shrinks while failing
    assert max(gaps) <= 500 + 10  # capped
    assert gaps[-1] >= 500 - 10 and gaps[0] <= 200 + 10


def test_backoff_resets_after_a_new_view_executes_a_request(cluster_cls):
    c = cluster_cls(**FAST)
    c.crash(0)
    r = c.request(0, 1)
    c.submit(r, to=1)
    assert c.run_until(lambda: c.all_executed([r]), timeout_ms=5_000)
    assert c.replicas[2].health()["view_change"]["failed_attempts"] == 0


def _proof(c, view, seq, requests, time_ms=0):
    primary = view % c.config.n
    pp = c.auth(primary).sign(
        PrePrepare(view, seq, time_ms, requests, batch_digest(time_ms, requests), primary)
    )
    backups = [i for i in range(c.config.n) if i != primary][: 2 * c.config.f]
    prepares = tuple(c.auth(i).sign(Prepare(view, seq, pp.digest, i)) for i in backups)
    return PreparedProof(pp, prepares)


def test_new_view_reproposes_highest_view_prepared_batch(cluster_cls):
    c = cluster_cls()
    ra, rb = c.request(0, 1), c.request(0, 2)
    low, high = _proof(c, 0, 1, (ra,)), _proof(c, 1, 1, (rb,), time_ms=5)
    vcs = (
        ViewChange(2, 0, bytes(32), (), (low,), 0),
        ViewChange(2, 0, bytes(32), (), (high,), 1),
        ViewChange(2, 0, bytes(32), (), (), 3),
    )
    pps = build_new_view(c.config, 2, vcs)
    assert len(pps) == 1
    # re-proposed as a header: the digest binds the batch, the body travels apart
    assert pps[0].requests == () and pps[0].time_ms == 5 and pps[0].view == 2
    assert pps[0].digest == high.pre_prepare.digest and pps[0].replica == 2


def test_null_request_fills_gaps(cluster_cls):
    c = cluster_cls()
    r = c.request(0, 1)
    vcs = (
        ViewChange(1, 0, bytes(32), (), (_proof(c, 0, 3, (r,)),), 0),
        ViewChange(1, 0, bytes(32), (), (), 2),
        ViewChange(1, 0, bytes(32), (), (), 3),
    )
    pps = build_new_view(c.config, 1, vcs)
    assert [p.seq for p in pps] == [1, 2, 3]
    assert [p.requests for p in pps] == [(), (), ()]  # headers only
    assert [lacks_body(p) for p in pps] == [False, False, True]  # null, null, r's batch
    assert pps[0].digest == batch_digest(NULL_BATCH_TIME_MS, ())


def test_new_view_starts_above_the_highest_stable_checkpoint(cluster_cls):
    c = cluster_cls(checkpoint_interval=2, watermark_window=4)
    r = c.request(0, 1)
    # replica 1's stable checkpoint is at 2; a proof for seq 2 from another replica is ignored
    from consensus import Checkpoint

    proof = tuple(c.auth(i).sign(Checkpoint(2, b"h" * 32, i)) for i in range(3))
    vcs = (
        ViewChange(1, 0, bytes(32), (), (_proof(c, 0, 2, (r,)),), 0),
        ViewChange(1, 2, b"h" * 32, proof, (_proof(c, 0, 3, (r,)),), 2),
        ViewChange(1, 0, bytes(32), (), (), 3),
    )
    pps = build_new_view(c.config, 1, vcs)
    assert [p.seq for p in pps] == [3]


def _in_view_change_to_1(c):
    c.crash(0)
    c.tamper = lambda s, t, m: [] if isinstance(m, NewView) else None
    c.submit(c.request(0, 1), to=1)
    assert c.run_until(
        lambda: all(c.replicas[i].in_view_change and c.replicas[i].view == 1 for i in (2, 3))
    )
    c.tamper = None
    c.crash(1)  # stop the real primary of view 1; the test plays it


def test_invalid_new_view_is_rejected_as_evidence(cluster_cls):
    c = cluster_cls(**FAST)
    _in_view_change_to_1(c)
    a1 = c.auth(1)
    vcs = tuple(c.replicas[i]._own[("view-change", 1)] for i in (1, 2, 3))
    good = build_new_view(c.config, 1, vcs)
    good_pps = tuple(a1.sign(p) for p in good)
    bad_cases = {
        "too few view-changes": NewView(1, vcs[:2], good_pps, 1),
        "extra pre-prepare": NewView(1, vcs, good_pps + (a1.sign(_null_pp(len(good) + 1)),), 1),
        "tampered view-change": NewView(
            1, (msgspec.structs.replace(vcs[0], stable_seq=16),) + vcs[1:], good_pps, 1
        ),
    }
    r2 = c.replicas[2]
    for name, nv in bad_cases.items():
        out = r2.step(Receive(1, a1.sign(nv)))
        assert [e.kind for e in out.evidence] == ["bad-new-view"], name
        assert r2.in_view_change and r2.view == 1, name
    # not from the primary of view 1
    out = r2.step(Receive(3, c.auth(3).sign(NewView(1, vcs, good_pps, 3))))
    assert [e.kind for e in out.evidence] == ["bad-new-view"]
    # the correct one is accepted
    out = r2.step(Receive(1, a1.sign(NewView(1, vcs, good_pps, 1))))
    assert out.evidence == [] and not r2.in_view_change and r2.view == 1


def _null_pp(seq):
    return PrePrepare(1, seq, 0, (), batch_digest(0, ()), 1)


def test_primary_resends_new_view_to_a_replica_that_missed_it(cluster_cls):
    c = cluster_cls(**FAST)
    c.crash(0)
    dropped = []

    def tamper(s, t, m):
        if isinstance(m, NewView) and t == 3 and not dropped:
            dropped.append(m)
            return []
        return None

    c.tamper = tamper
    r = c.request(0, 1)
    c.submit(r, to=3)
    assert c.run_until(lambda: c.all_executed([r]), timeout_ms=5_000)
    assert dropped and c.replicas[3].view == 1 and not c.replicas[3].in_view_change


def test_restarted_replica_rejoins_without_a_second_view_change(cluster_cls):
    c = cluster_cls(**FAST)
    c.crash(0)
    r = c.request(0, 1)
    c.submit(r, to=1)
    assert c.run_until(lambda: c.replicas[2].view == 1)
    c.crash(2)
    c.restart(2)
    assert c.replicas[2].view == 1
    r2 = c.request(0, 2)
    c.submit(r2, to=2)
    assert c.run_until(lambda: c.all_executed([r, r2]), timeout_ms=5_000)
    assert find_equivocations(c.sent) == []


def test_backup_ignores_normal_case_messages_while_in_view_change(cluster_cls):
    c = cluster_cls(**FAST)
    r1 = c.replicas[1]
    r1.step(ClientRequest(c.request(0, 1)))
    r1.step(Tick(1_000))
    assert r1.in_view_change and r1.view == 1
    req = c.request(0, 2)
    pp = c.auth(0).sign(PrePrepare(0, 1, 1_000, (req,), batch_digest(1_000, (req,)), 0))
    out = r1.step(Receive(0, pp))
    assert out.send == [] and out.evidence == []


def test_restart_during_view_change_resends_the_same_view_change(cluster_cls):
    c = cluster_cls(**FAST)
    c.crash(0)
    c.submit(c.request(0, 1), to=2)
    c.tamper = lambda s, t, m: [] if isinstance(m, NewView) else None
    assert c.run_until(lambda: c.replicas[2].in_view_change)
    before = c.replicas[2]._own[("view-change", c.replicas[2].view)]
    # more happens (a new prepared certificate could change a fresh VIEW-CHANGE), then restart
    c.crash(2)
    c.restart(2)
    rep = c.replicas[2]
    assert rep.in_view_change and rep.view == before.new_view
    out = rep.step(Tick(c.now + 1_000))
    vcs = [s.message for s in out.send if isinstance(s.message, ViewChange)]
    assert vcs == [before]
    assert find_equivocations(c.sent + vcs) == []
