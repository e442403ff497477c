"""Batching with a pipeline depth (our extension to Castro-Liskov's batching): the primary
proposes a non-full batch only while fewer than `max_in_flight` of its batches await local
execution, so under load requests pile up into big batches instead of a stream of tiny ones
(every batch costs several fsyncs on every node). A full batch cannot grow by waiting: only the
high watermark bounds it. Heartbeats only on an idle pipeline. A lone request is proposed after
`batch_delay_ms`, exactly as before."""

import heapq
import itertools

import pytest

from consensus import (
    ClientRequest,
    ClientRequests,
    Config,
    Forward,
    Prepare,
    PrePrepare,
    Receive,
    batch_digest,
)


def delayed_cluster(cluster_cls, delay_ms: int, **cfg):
    """The lock-step harness with a network: every message takes `delay_ms` to arrive."""

    class Delayed(cluster_cls):
        def __init__(self) -> None:
            super().__init__(**cfg)
            self.transit: list = []
            self.order = itertools.count()

        def deliver_all(self, limit: int = 2_000_000) -> None:
            while True:
                while self.queue:
                    s, t, m = self.queue.popleft()
                    due = self.now + delay_ms
                    heapq.heappush(self.transit, (due, next(self.order), s, t, m))
                if not self.transit or self.transit[0][0] > self.now:
                    return
                _, _, s, t, m = heapq.heappop(self.transit)
                if s not in self.down and t not in self.down:
                    self.step(t, Receive(s, m))

    return Delayed()


def burst(c, total: int, per_ms: int) -> list:
    """`total` requests reach the primary, `per_ms` each millisecond; returns them."""
    reqs = [c.request(k % 8, k // 8 + 1) for k in range(total)]
    for i in range(0, total, per_ms):
        for r in reqs[i:i + per_ms]:
            c.step(0, ClientRequest(r))
        c.tick(1)
    assert c.run_until(lambda: c.all_executed(reqs), dt=1)
    c.assert_agreement()
    return reqs


def batches(c) -> list[int]:
    return [len(ex.requests) for _, ex in sorted(c.executed[0].items()) if ex.requests]


def test_a_burst_of_1000_requests_fills_about_10_batches_not_dozens(cluster_cls):
    c = delayed_cluster(cluster_cls, 10, batch_max=100, max_in_flight=4)
    burst(c, 1000, per_ms=10)
    sizes = batches(c)
    assert sum(sizes) == 1000
    assert len(sizes) <= 20, sizes  # measured: 17
    assert max(sizes) == 100


def test_without_a_pipeline_cap_the_same_burst_makes_tiny_batches(cluster_cls):
    """The control (max_in_flight=0, the old behaviour): a batch every batch_delay_ms."""
    c = delayed_cluster(cluster_cls, 10, batch_max=100, max_in_flight=0)
    burst(c, 1000, per_ms=10)
    assert len(batches(c)) >= 45  # measured: 50 batches of 20


def test_a_non_full_batch_is_proposed_only_below_max_in_flight(cluster_cls):
    c = delayed_cluster(cluster_cls, 10, batch_max=100, max_in_flight=2)
    proposals = []  # (batches in flight when it was proposed, size of the new batch)
    step = c.step

    def watch(rid, event):
        if rid != 0:
            return step(rid, event)
        sent = len(c.sent)
        step(rid, event)  # executes first, then proposes: count back from the end
        after = c.replicas[0].health()["proposed_in_flight"]
        new = [m for m in c.sent[sent:] if isinstance(m, PrePrepare)]
        proposals.extend((after - len(new) + k, len(m.requests)) for k, m in enumerate(new))

    c.step = watch
    burst(c, 300, per_ms=5)
    assert sum(size for _, size in proposals) == 300
    assert all(depth < 2 for depth, size in proposals if size < 100), proposals
    assert any(depth >= 2 for depth, size in proposals if size == 100), proposals
    assert c.replicas[0].health()["proposed_in_flight"] == 0


def test_a_backlog_drains_in_full_batches_beyond_the_cap(cluster_cls):
    c = delayed_cluster(cluster_cls, 10, batch_max=100, max_in_flight=1)
    burst(c, 1000, per_ms=1000)  # all at once: full batches go out without waiting
    assert batches(c) == [100] * 10
    assert c.now <= 45  # one round trip (3 hops of 10 ms) plus the final tick, not ten


@pytest.mark.parametrize("cap", [0, 1, 4])
def test_a_single_request_is_proposed_after_batch_delay_ms(cluster_cls, cap):
    c = cluster_cls(batch_max=100, batch_delay_ms=2, max_in_flight=cap)
    c.submit(c.request(0, 1))
    assert not [m for m in c.sent if isinstance(m, PrePrepare)]
    c.tick(1)
    assert not [m for m in c.sent if isinstance(m, PrePrepare)]
    c.tick(1)
    pps = [m for m in c.sent if isinstance(m, PrePrepare)]
    assert len(pps) == 1 and len(pps[0].requests) == 1
    assert all(1 in c.executed[i] for i in range(4))


def test_the_batch_deadline_is_not_armed_while_the_pipeline_is_full(cluster_cls):
    c = delayed_cluster(cluster_cls, 10, batch_max=100, max_in_flight=1, status_interval_ms=500)
    c.step(0, ClientRequest(c.request(0, 1)))
    c.tick(2)  # proposed: one batch in flight
    out = c.replicas[0].step(ClientRequest(c.request(0, 2)))
    c.apply(0, out)
    # no wake-up for the waiting request until something executes (only the status timer)
    assert out.next_deadline_ms == c.replicas[0]._next_status_ms


def test_heartbeats_only_on_an_idle_pipeline(cluster_cls):
    c = delayed_cluster(cluster_cls, 10, heartbeat_ms=5, max_in_flight=4)
    c.tick(6)  # idle: an empty heartbeat batch goes out
    assert [len(m.requests) for m in c.sent if isinstance(m, PrePrepare)] == [0]
    c.tick(20)  # it is in flight for 30 ms: no second heartbeat meanwhile
    assert len([m for m in c.sent if isinstance(m, PrePrepare)]) == 1
    assert c.run_until(lambda: len([m for m in c.sent if isinstance(m, PrePrepare)]) == 2,
                       timeout_ms=100, dt=1)
    assert c.replicas[0].last_executed >= 1


def test_max_in_flight_is_validated():
    assert Config(max_in_flight=0).max_in_flight == 0
    with pytest.raises(ValueError, match="max_in_flight"):
        Config(max_in_flight=-1)


def test_batches_and_forwards_are_bounded_in_bytes_not_only_in_count(cluster_cls):
    # 60 KB ops: 400 of them would make a 24 MB PRE-PREPARE, over the 8 MiB message limit
    c = cluster_cls(batch_max=400, batch_max_bytes=200_000)
    big = b"x" * 60_000
    reqs = [c.request(k, 1, op=big) for k in range(40)]
    out = c.replicas[1].step(ClientRequests(tuple(reqs)))
    fwds = [s.message for s in out.send if isinstance(s.message, Forward)]
    assert len(fwds) >= 3  # one group of 40 submissions -> several FORWARDs of <= ~1 MiB
    assert sum(len(f.requests) for f in fwds) == 40
    assert all(sum(len(r.op) for r in f.requests) <= 1024 * 1024 for f in fwds)
    for r in reqs:
        c.submit(r, to=0)
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=5_000)
    c.assert_agreement()
    sizes = [len(ex.requests) for ex in c.executed[2].values() if ex.requests]
    assert max(sizes) == 3 and sum(sizes) == 40  # 3 x 60 KB + overhead <= 200,000 bytes


def test_a_backup_rejects_a_batch_over_batch_max_bytes(cluster_cls):
    c = cluster_cls(batch_max=400, batch_max_bytes=200_000)
    reqs = tuple(c.request(k, 1, op=b"x" * 60_000) for k in range(4))
    pp = c.auth(0).sign(PrePrepare(0, 1, 1, reqs, batch_digest(1, reqs), 0))
    out = c.replicas[1].step(Receive(0, pp))
    assert not any(isinstance(s.message, Prepare) for s in out.send)
    assert any("batch_max_bytes" in ev.reason for ev in out.evidence)
