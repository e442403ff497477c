"""A backup suspects a silent primary from the STATUS/heartbeat traffic alone (no client
request needed), never a live one, never when it is the one cut off, and not when its own
loop stalled while the primary's messages queued up (consensus/primary_watch.py)."""

from consensus import ClientRequest, Receive, Tick
from consensus.primary_watch import silence_ms

IDLE = {"status_interval_ms": 500, "heartbeat_ms": 1_000}  # the defaults' cadence


def started(c, i: int) -> dict:
    return c.replicas[i].health()["view_change"]["started"]


def test_a_crashed_idle_primary_is_suspected_within_the_silence_bound(cluster_cls):
    c = cluster_cls(**IDLE)
    c.run_until(lambda: False, timeout_ms=3_000)  # heartbeats and statuses flowing
    assert c.replicas[1].view == 0 and c.replicas[1].last_executed >= 2
    c.crash(0)
    crashed_at = c.now
    bound = silence_ms(c.config)
    assert c.run_until(lambda: all(c.replicas[i].view == 1 and not c.replicas[i].in_view_change
                                   for i in (1, 2, 3)), timeout_ms=3_000)
    # detected from silence alone: no client request was ever submitted
    assert sum(started(c, i).get("primary-silent", 0) for i in (1, 2, 3)) >= 2
    assert c.now - crashed_at <= bound + c.config.status_interval_ms // 10 + 50
    h = c.replicas[1].last_executed
    assert c.run_until(lambda: c.replicas[1].last_executed > h, timeout_ms=2_000)  # heartbeats


def test_a_live_idle_primary_is_never_suspected(cluster_cls):
    c = cluster_cls(**IDLE)
    c.run_until(lambda: False, timeout_ms=30_000, dt=10)
    assert all(c.replicas[i].view == 0 and not started(c, i) for i in range(4))
    # heartbeats off: the primary's STATUS alone keeps it unsuspected
    c = cluster_cls(status_interval_ms=500, heartbeat_ms=0)
    c.run_until(lambda: False, timeout_ms=30_000, dt=50)
    assert all(c.replicas[i].view == 0 and not started(c, i) for i in range(4))


def test_a_backup_cut_off_from_everyone_does_not_suspect(cluster_cls):
    c = cluster_cls(**IDLE)
    c.run_until(lambda: False, timeout_ms=2_000)
    c.tamper = lambda s, t, m: [] if 3 in (s, t) else None  # replica 3 partitioned
    c.run_until(lambda: False, timeout_ms=10_000)
    assert c.replicas[3].view == 0 and not c.replicas[3].in_view_change
    assert not started(c, 3)
    c.tamper = None  # healed: it catches up in view 0
    assert c.run_until(lambda: c.replicas[3].last_executed >= c.replicas[1].last_executed,
                       timeout_ms=3_000)
    assert all(c.replicas[i].view == 0 for i in range(4))


def test_our_own_stall_is_not_the_primarys_silence(cluster_cls):
    """A Tick after a long stall of our loop comes before the messages that queued meanwhile
    (the node's group puts the Tick first): the silence is only confirmed on a later Tick."""
    c = cluster_cls(**IDLE)
    c.run_until(lambda: False, timeout_ms=2_000)
    rep = c.replicas[1]
    status0 = c.replicas[0]._status()
    status2 = c.replicas[2]._status()
    rep.step(Receive(2, status2))
    late = c.now + 5_000  # our loop was stalled 5 s; the primary's STATUS waits in our inbox
    rep.step(Tick(late))
    assert not rep.in_view_change
    rep.step(Receive(0, status0))
    rep.step(Tick(late + 100))
    assert not rep.in_view_change and not rep.health()["view_change"]["started"]


def test_a_request_at_a_backup_commits_soon_after_the_primary_crashes(cluster_cls):
    """The failover figure: primary crashed, a request sent to a backup at that moment commits
    within the silence bound plus a view change, well before the request timer."""
    c = cluster_cls(**IDLE, timeout_request_ms=2_000)
    c.run_until(lambda: False, timeout_ms=2_000)
    c.crash(0)
    t0 = c.now
    req = c.request(0, 1)
    c.step(2, ClientRequest(req))
    assert c.run_until(lambda: c.all_executed([req]), timeout_ms=5_000, dt=10)
    assert c.now - t0 < 1_200, c.now - t0
    assert not any(started(c, i).get("request-timeout") for i in (1, 2, 3))
