"""The request timer tracks progress on the oldest pending request (issue 36): a primary that
orders everything but one request is deposed, one that works through a deep queue at capacity
is not."""

from __future__ import annotations

from consensus import ClientRequest, Request
from consensus.messages import Forward


def _censor(victim: Request):
    """The primary (replica 0) never hears of `victim`: as if it dropped it."""

    def tamper(sender, to, msg):
        if to == 0 and isinstance(msg, Forward) and any(
                r.client_id == victim.client_id for r in msg.requests):
            kept = tuple(r for r in msg.requests if r.client_id != victim.client_id)
            return [msg.__class__(kept, msg.replica)] if kept else []
        return None

    return tamper


def test_a_primary_that_orders_everything_but_one_request_is_deposed(cluster_cls):
    c = cluster_cls(forward_relay_ms=0, timeout_request_ms=1_000)
    victim = c.request(99, 1)
    c.tamper = _censor(victim)
    c.submit(victim, to=1)
    seq = 0

    def busy_and_done() -> bool:  # other clients keep the primary busy meanwhile
        nonlocal seq
        seq += 1
        c.step(0, ClientRequest(c.request(seq % 5, seq)))
        return c.all_executed([victim], [1, 2, 3])

    assert c.run_until(busy_and_done, timeout_ms=120_000, dt=50), (
        f"the victim request never executed; views {[r.view for r in c.replicas]}")
    assert min(r.view for r in c.replicas[1:]) >= 1
    c.assert_agreement()


def test_a_deep_queue_at_a_primary_working_at_capacity_deposes_nobody(cluster_cls):
    c = cluster_cls(batch_max=4, forward_relay_ms=0, timeout_request_ms=500)
    reqs = [c.request(k % 50, k // 50 + 1) for k in range(600)]
    c.tamper = lambda sender, to, msg: [] if to == 0 and isinstance(msg, Forward) else None
    for r in reqs:  # every backup holds all 600 at once
        for i in (1, 2, 3):
            c.step(i, ClientRequest(r))
    c.deliver_all()
    # the primary hears of them 4 per 50 ms, newest first: the backups' oldest requests wait
    # ~7.5 s (15 timer periods) while the primary works at its capacity
    feed = list(reversed(reqs))

    def fed_and_done() -> bool:
        for _ in range(4):
            if feed:
                c.step(0, ClientRequest(feed.pop(0)))
        return c.all_executed(reqs)

    assert c.run_until(fed_and_done, timeout_ms=60_000, dt=50)
    assert all(r.view == 0 for r in c.replicas), [r.view for r in c.replicas]
    assert c.now > 10 * c.config.timeout_request_ms, c.now
    assert min(r.health()["request_timer_extended"] for r in c.replicas[1:]) >= 10


def test_a_primary_working_through_the_largest_requests_counts_as_progress():
    # a few of the largest legal requests can take a whole period between them: a quarter of
    # batch_max_bytes executed in the period is progress, as a quarter of batch_max requests
    from consensus.request_timer import RequestTimer

    mib = 1024 * 1024
    for executed, nbytes, want in ((1, 2 * mib, True), (1, 100, False), (0, 0, False),
                                   (5, 5 * 100, True)):
        rt = RequestTimer()
        rt.arm(0, 1_000, (b"c", 1), pending=20, n=4)
        rt.executed(executed, nbytes)
        got = rt.progressing(1_000, 1_000, pending=20, batch_max=200, n=4,
                             batch_max_bytes=mib)
        assert got is want, (executed, nbytes)
        if got:
            assert rt.deadline == 2_000 and rt.in_period == rt.in_period_bytes == 0
    # the byte rule does not lift the bound on requests ordered ahead of the watched one
    rt = RequestTimer()
    rt.arm(0, 1_000, (b"c", 1), pending=1, n=4)  # budget 4 * (2 + 4) = 24
    rt.executed(30, 30 * mib)
    assert not rt.progressing(1_000, 1_000, pending=1, batch_max=200, n=4, batch_max_bytes=mib)
