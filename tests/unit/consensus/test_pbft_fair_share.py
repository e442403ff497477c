"""Fair shares at the primary (issue 36): requests relayed by a replica are batched round-robin
with the primary's own clients and other relays, so one relay with a deep queue of valid
requests cannot crowd out everyone else."""

from __future__ import annotations

from consensus import ClientRequest, ClientRequests, Receive, Tick
from consensus.messages import Forward


def _batches(c, rid: int = 0) -> list[list[bytes]]:
    return [[r.client_id for r in ex.requests] for _, ex in sorted(c.executed[rid].items())]


def test_a_relay_with_a_deep_queue_gets_one_turn_per_round(cluster_cls):
    # a window of 4 seqs: the relay's first 16 requests fill it, the rest queue
    c = cluster_cls(batch_max=4, checkpoint_interval=2, watermark_window=4, forward_relay_ms=0)
    flood = tuple(c.request(100 + i, 1) for i in range(40))  # 40 clients' valid requests
    primary = c.replicas[0]
    c.apply(0, primary.step(Receive(3, c.auth(3).sign(Forward(flood, 3)))))
    honest = [c.request(k, 1) for k in range(3)]
    for req in honest:
        c.apply(0, primary.step(ClientRequest(req)))
    assert c.run_until(lambda: sum(map(len, _batches(c))) == 43)
    batches = _batches(c)
    ids = {r.client_id for r in honest}
    last_honest = max(i for i, b in enumerate(batches) if ids & set(b))
    # the window's 4 batches were proposed before they arrived; then the primary's clients
    # (source 0) and the relay (source 3) alternate: all 3 honest requests are in the next 2
    # batches, not behind the relay's 24 queued ones (batch 11 in arrival order)
    assert last_honest <= 5, [len(ids & set(b)) for b in batches]
    assert len(batches) == 11


def test_a_batch_full_by_bytes_is_proposed_without_waiting_for_the_batch_delay(cluster_cls):
    c = cluster_cls(batch_max_bytes=2 * (64 * 1024 + 160), batch_delay_ms=1_000)
    big = [c.request(k, 1, op=b"x" * 60_000) for k in range(3)]  # 3 x 60 KB > batch_max_bytes
    for req in big:
        c.submit(req, to=0)
    # two requests fill a batch by bytes: proposed and executed at once, at time 0
    assert c.now == 0 and len(c.executed_keys(1)) == 2, c.executed_keys(1)


def _rate_cluster(cluster_cls):
    """Floor 10 requests/s, bucket 1 s deep, relays at once: (cluster, backup 1)."""
    c = cluster_cls(source_rate_requests=10, source_rate_bytes=1024 * 1024,
                    source_burst_ms=1_000, forward_relay_ms=0)
    return c, c.replicas[1]


def _count_verifies(replica) -> list:
    """A list that grows by one per signature check the replica makes from now on."""
    verified: list = []
    verify = replica.auth.verifier.verify
    replica.auth.verifier.verify = lambda *a: verified.append(1) or verify(*a)
    return verified


def test_requests_relayed_past_the_relay_pool_share_are_dropped_before_verifying(cluster_cls):
    c = cluster_cls(max_pending_bytes=4 * 2 * (64 * 1024 + 160))  # a share of 2 big requests
    backup = c.replicas[1]
    reqs = tuple(c.request(100 + i, 1, op=b"x" * 60_000) for i in range(10))
    verified = _count_verifies(backup)
    backup.step(Receive(3, c.auth(3).sign(Forward(reqs, 3))))
    assert backup.pending_count == 2
    assert backup.dropped["forwarded-request-over-share"] == 8
    assert 1 <= len(verified) <= 3  # the FORWARD's own signature and the 2 admitted requests


def test_a_relay_over_its_admission_rate_is_dropped_unverified_and_refills_with_time(cluster_cls):
    # floor 10 requests/s, bucket 1 s deep: a relay sending 50 at once gets 10 admitted
    c, backup = _rate_cluster(cluster_cls)
    verified = _count_verifies(backup)
    flood = tuple(c.request(100 + i, 1) for i in range(50))
    backup.step(Receive(3, c.auth(3).sign(Forward(flood, 3))))
    assert backup.pending_count == 10
    assert backup.dropped["forwarded-request-over-rate"] == 40
    assert len(verified) == 11  # the FORWARD and the 10 admitted: the rest cost no CPU
    # half a second later the bucket holds 5 more, not 50
    c.tick(500)
    backup.step(Receive(3, c.auth(3).sign(Forward(flood[10:], 3))))
    assert backup.pending_count == 15
    # another relay has a bucket of its own
    other = tuple(c.request(200 + i, 1) for i in range(5))
    backup.step(Receive(2, c.auth(2).sign(Forward(other, 2))))
    assert backup.pending_count == 20


def test_a_forward_from_a_relay_with_an_empty_bucket_is_dropped_before_its_signature(
        cluster_cls):
    # a flood costs a decode per frame, not a signature check over its bytes; nothing from
    # it is blamed on the relay either (its signature was never looked at)
    c, backup = _rate_cluster(cluster_cls)
    verified = _count_verifies(backup)
    first = tuple(c.request(100 + i, 1) for i in range(10))
    backup.step(Receive(3, c.auth(3).sign(Forward(first, 3))))
    assert backup.pending_count == 10 and len(verified) == 11  # the bucket is now empty
    flood = tuple(c.request(200 + i, 1) for i in range(30))
    unsigned = Forward(flood, 3)  # even a bad signature: never checked
    for fwd in (c.auth(3).sign(Forward(flood, 3)), unsigned):
        out = backup.step(Receive(3, fwd))
        assert out.evidence == []
    assert len(verified) == 11
    assert backup.dropped["forwarded-request-over-rate"] == 60
    # a re-forward of what we hold is counted as such, whatever the bucket
    out = backup.step(Receive(3, c.auth(3).sign(Forward(first, 3))))
    assert out.evidence == []
    assert backup.dropped["forwarded-request-already-pending"] == 10
    assert backup.dropped["forwarded-request-over-rate"] == 60
    assert backup.pending_count == 10
    # the bucket refills with time: the next FORWARD is checked and admitted again
    c.tick(500)
    out = backup.step(Receive(3, unsigned))
    assert [e.kind for e in out.evidence] == ["bad-signature"]
    backup.step(Receive(3, c.auth(3).sign(Forward(flood[:5], 3))))
    assert backup.pending_count == 15


def test_our_clients_over_the_rate_are_refused_rate_limited_within_what_peers_admit(cluster_cls):
    from consensus import Rejected

    c = cluster_cls(source_rate_requests=10, source_rate_bytes=64 * 1024 + 160,
                    source_burst_ms=2_000)
    reqs = [c.request(k, 1) for k in range(30)]
    out = c.replicas[1].step(ClientRequests(tuple(reqs)))
    refused = [r for r in out.reply if isinstance(r, Rejected)]
    # our clients get half the bucket peers allow us (10/s x 1 s), so the primary, which
    # allows 10/s x 2 s from us as a relay, admits everything we forward
    assert len(refused) == 20 and {r.reason for r in refused} == {"rate limited"}
    assert c.run_until(lambda: len(c.executed_keys(0)) == 10)
    assert c.replicas[0].dropped["forwarded-request-over-rate"] == 0


def test_a_fresh_source_does_not_wait_behind_another_sources_batch_in_flight(cluster_cls):
    c = cluster_cls(forward_relay_ms=0, max_in_flight=1)
    primary = c.replicas[0]
    c.down = {1, 2, 3}  # nothing commits: what the primary proposed stays in flight
    relay = tuple(c.request(100 + i, 1) for i in range(3))
    c.step(0, Receive(3, c.auth(3).sign(Forward(relay, 3))))
    c.tick(10)  # the relay's batch is proposed and in flight (nothing delivered yet)
    assert primary._in_flight() == 1
    more = tuple(c.request(100 + i, 2) for i in range(3))
    c.step(0, Receive(3, c.auth(3).sign(Forward(more, 3))))
    c.tick(10)
    assert primary._in_flight() == 1  # the same source waits for its batch, as before
    c.step(0, ClientRequest(c.request(7, 1)))  # our own client: a source with nothing in flight
    c.tick(10)
    assert primary._in_flight() == 2


def test_another_relays_old_requests_go_again_to_the_primary_only(cluster_cls):
    c = cluster_cls(forward_relay_ms=0)
    backup = c.replicas[1]
    reqs = tuple(c.request(100 + i, 1) for i in range(3))
    backup.step(Receive(3, c.auth(3).sign(Forward(reqs, 3))))
    mine = c.request(5, 1)
    backup.step(ClientRequest(mine))
    backup._rt.deadline = 10**9  # the primary is working through the queue: no view change
    out = backup.step(Tick(c.now + c.config.timeout_request_ms + c.config.status_interval_ms))
    fwds = [(s.to, s.message) for s in out.send if isinstance(s.message, Forward)]
    to_all = [m for to, m in fwds if to is None]
    to_primary = [m for to, m in fwds if to == 0]
    assert [r.client_id for m in to_all for r in m.requests] == [mine.client_id]
    assert sorted(r.client_id for m in to_primary for r in m.requests) == sorted(
        r.client_id for r in reqs)


def test_a_source_over_its_rate_rides_in_the_others_batches_instead_of_starting_its_own(
        cluster_cls):
    from consensus.phases.proposal import BULK_DELAY_MS

    c = cluster_cls(source_rate_requests=10, source_rate_bytes=1024 * 1024,
                    source_burst_ms=1_000, forward_relay_ms=0, batch_delay_ms=2)
    primary = c.replicas[0]
    flood = tuple(c.request(100 + i, 1) for i in range(50))
    c.step(0, Receive(3, c.auth(3).sign(Forward(flood, 3))))  # 10 admitted, then refused
    c.run_until(lambda: len(c.executed_keys(0)) == 10)
    c.tick(500)  # its bucket refills a little; it was refused within the last second
    c.step(0, Receive(3, c.auth(3).sign(Forward(flood[10:11], 3))))  # one more from it
    start = c.now
    c.tick(10)
    assert primary.pending_count == 1  # not proposed after batch_delay_ms: it waits
    c.step(0, ClientRequest(c.request(7, 1)))  # our client's request starts a batch ...
    assert c.run_until(lambda: len(c.executed_keys(0)) == 12)  # ... that carries it
    assert c.now - start < BULK_DELAY_MS
