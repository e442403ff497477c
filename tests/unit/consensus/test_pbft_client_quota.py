"""The per-client bound on the pending pool (Config.max_pending_per_client, from the genesis
`app.quotas.max_pending`): a client with that many requests pending is refused `client quota`
whatever source brings its requests, and gets room back as its requests leave the pool; other
clients are not affected."""

from __future__ import annotations

from consensus import ClientRequest, Receive, Rejected
from consensus.messages import Forward


def test_a_client_at_its_pending_bound_is_refused_and_others_are_not(cluster_cls):
    c = cluster_cls(max_pending_per_client=3, source_rate_requests=0, source_rate_bytes=0)
    rep = c.replicas[1]
    outs = [rep.step(ClientRequest(c.request(0, k))) for k in range(1, 5)]
    assert all(not o.reply for o in outs[:3])
    (refused,) = outs[3].reply
    assert isinstance(refused, Rejected) and refused.reason.startswith("client quota")
    assert "max_pending" in refused.reason and "3" in refused.reason
    assert rep.pending_count == 3
    # what the node asks before a signature check says the same, except for a request the
    # pool holds (a resubmission is answered "already pending", not refused)
    assert rep.quota_refusal(c.request(0, 9)) == refused.reason
    assert rep.quota_refusal(c.request(0, 2)) is None
    assert rep.quota_refusal(c.request(1, 9)) is None
    # another client still gets in
    assert not rep.step(ClientRequest(c.request(1, 1))).reply
    assert rep.pending_count == 4


def test_the_bound_counts_requests_relayed_by_peers_too(cluster_cls):
    c = cluster_cls(max_pending_per_client=2, source_rate_requests=0, source_rate_bytes=0,
                    forward_relay_ms=0)
    backup = c.replicas[1]
    reqs = tuple(c.request(7, k) for k in range(1, 6))
    backup.step(Receive(3, c.auth(3).sign(Forward(reqs, 3))))
    assert backup.pending_count == 2
    assert backup.dropped["forwarded-request-not-admitted"] == 3


def test_room_comes_back_as_the_clients_requests_commit(cluster_cls):
    c = cluster_cls(max_pending_per_client=2, source_rate_requests=0, source_rate_bytes=0)
    for k in range(1, 3):
        c.submit(c.request(0, k), to=0)
    assert c.run_until(lambda: len(c.executed_keys(0)) == 2)
    assert c.replicas[0].pending_count == 0
    out = c.replicas[0].step(ClientRequest(c.request(0, 3)))
    assert not out.reply  # admitted: the first two left the pool


# ---------------------------------------------------------------- light requests


def test_heavy_requests_leave_the_bottom_of_a_bucket_to_light_ones():
    from consensus.fair import SourceRates

    rates = SourceRates(per_s=80, bytes_per_s=0, burst_ms=1_000, n=4)
    heavy = 0
    while rates.take(1, 0, 100, light=False):
        heavy += 1
    assert heavy == 70  # 80 tokens, the bottom eighth (10) kept
    light = 0
    while rates.take(1, 0, 100, light=True):
        light += 1
    assert light == 10
    assert not rates.can_take(1, 0, 100, light=True)


def test_a_flooding_clients_relay_still_passes_a_light_clients_request(cluster_cls):
    # floor 8 requests/s, bucket 1 s deep: 7 for heavy requests, 1 kept for light ones
    c = cluster_cls(source_rate_requests=8, source_rate_bytes=1024 * 1024,
                    source_burst_ms=1_000, forward_relay_ms=0)
    backup = c.replicas[1]
    first = c.request(50, 1)
    backup.step(Receive(3, c.auth(3).sign(Forward((first,), 3))))  # client 50 now pending
    flood = tuple(c.request(50, k) for k in range(2, 40))
    honest = c.request(60, 1)
    # the honest request rides last in the relay's FORWARD, behind the flood
    backup.step(Receive(3, c.auth(3).sign(Forward(flood + (honest,), 3))))
    assert backup._is_admitted(honest)
    assert backup.pending_count == 1 + 1 + 5  # the honest one first, the flood down to the reserve


# ---------------------------------------------------------------- pipeline depth


def _proposed(c) -> set[int]:
    from consensus.messages import PrePrepare

    return {m.seq for s, _, m in c.queue if s == 0 and isinstance(m, PrePrepare)}


def test_max_full_in_flight_caps_the_full_batches_a_backlog_puts_in_flight(cluster_cls):
    for cap, want in ((0, 5), (2, 2)):
        c = cluster_cls(batch_max=2, max_full_in_flight=cap, source_rate_requests=0,
                        source_rate_bytes=0)
        for k in range(10):  # 5 full batches' worth, nothing delivered yet
            c.step(0, ClientRequest(c.request(k, 1)))
        assert len(_proposed(c)) == want, (cap, _proposed(c))
        c.deliver_all()
        assert c.run_until(lambda c=c: len(c.executed_keys(0)) == 10)  # the backlog drains
