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


# ---------------------------------------------------------------- sparse clients first


def test_sparse_first_marks_busy_clients_and_holds_them_back_only_for_a_sparse_one():
    from consensus.fair import SparseFirst

    s = SparseFirst(backlog=3, window_ms=1_000, kept=2)
    s.note(b"busy", held=0, now=0)  # a first request: not sparse yet
    s.note(b"busy", held=1, now=10)  # another while one is pending: busy
    assert s.busy(b"busy", 10)
    assert not s.holds_back(b"busy", pool=9, now=10)  # nobody sparse yet
    s.note(b"seq", held=0, now=20)
    s.note(b"seq", held=0, now=40)  # twice alone within the window: sparse, active
    assert s.holds_back(b"busy", pool=3, now=50)
    assert not s.holds_back(b"busy", pool=2, now=50)  # the pool is short
    assert not s.holds_back(b"seq", pool=9, now=50)  # sparse clients never wait
    assert not s.holds_back(b"busy", pool=9, now=1_041)  # no sparse request for 1 s
    s.note(b"busy", held=0, now=500)  # a busy client's pool drained: still busy, not sparse
    s.note(b"busy", held=0, now=600)
    assert s.busy(b"busy", 600) and not s.holds_back(b"busy", pool=9, now=1_100)
    for c in (b"a", b"b", b"c"):  # bounded: the oldest busy client is forgotten
        s.note(c, held=1, now=1_200)
    assert not s.busy(b"a", 1_200) and s.busy(b"c", 1_200)
    off = SparseFirst(backlog=0)
    off.note(b"x", held=0, now=0)
    off.note(b"x", held=0, now=1)
    off.note(b"y", held=5, now=1)
    assert not off.holds_back(b"y", pool=10**6, now=1)


def test_a_busy_client_waits_while_a_sparse_one_is_served(cluster_cls):
    c = cluster_cls(sparse_backlog=4, source_rate_requests=0, source_rate_bytes=0)
    rep = c.replicas[1]
    c.submit(c.request(5, 1), to=1)  # a sequential client: one request, committed...
    assert c.run_until(lambda: len(c.executed_keys(1)) == 1)
    # busy clients fill the pool as they like while no sparse client is active
    outs = [rep.step(ClientRequest(c.request(0, k))) for k in range(1, 7)]
    assert not any(o.reply for o in outs) and rep.pending_count == 6
    # ...then its next one: it gets in, and the busy client is held back
    assert not rep.step(ClientRequest(c.request(5, 2))).reply
    (held,) = rep.step(ClientRequest(c.request(0, 7))).reply
    assert isinstance(held, Rejected) and held.reason.startswith("client quota")
    assert rep.quota_refusal(c.request(0, 8)) == held.reason  # the node's pre-check agrees
    # a new client still gets in; a busy client's resubmission is no refusal
    assert not rep.step(ClientRequest(c.request(6, 1))).reply
    assert rep.quota_refusal(c.request(0, 3)) is None
    assert rep.pending_count == 8


def test_a_client_refused_for_load_is_busy_not_sparse():
    # a throttled client's requests get in one by one; each finds none of its own pending,
    # which alone would look sparse: the refusal marks it busy
    from consensus.fair import SparseFirst

    s = SparseFirst(backlog=3, window_ms=1_000)
    s.note(b"seq", held=0, now=0)
    s.note(b"seq", held=0, now=10)  # sparse and active
    s.mark_busy(b"thr", now=20)  # refused for load
    s.note(b"thr", held=0, now=30)
    s.note(b"thr", held=0, now=40)
    assert s.busy(b"thr", 40) and s.holds_back(b"thr", pool=3, now=40)


def test_the_rate_refusal_of_a_verified_request_marks_its_client_busy(cluster_cls):
    c = cluster_cls(sparse_backlog=4, source_rate_requests=1, source_rate_bytes=1 << 20,
                    source_burst_ms=1_000)
    rep = c.replicas[1]
    replies = [rep.step(ClientRequest(c.request(3, k))).reply for k in range(1, 4)]
    assert any(r and r[0].reason == "rate limited" for r in replies), replies
    assert rep._sparse.busy(c.request(3, 1).client_id, rep._now)


def test_the_pre_check_counts_the_txs_of_the_same_call_ahead(cluster_cls):
    # a call of many txs: the node asks for each before checking its signature, counting the
    # call's txs before it as if they had entered, so only what the pool can take is verified
    c = cluster_cls(max_pending_per_client=3, sparse_backlog=4, source_rate_requests=0,
                    source_rate_bytes=0)
    rep = c.replicas[1]
    assert rep.quota_refusal(c.request(0, 1), ahead=2, own=2) is None
    refused = rep.quota_refusal(c.request(0, 3), ahead=3, own=3)
    assert refused is not None and "max_pending" in refused  # 3 of its own ahead: at the cap
    assert rep.quota_refusal(c.request(1, 1), ahead=3, own=0) is None  # another client's
    # a sparse client active: a client with txs ahead in its call is busy, and the pool with
    # the call's txs counted reaches the backlog
    c.submit(c.request(5, 1), to=1)
    assert c.run_until(lambda: len(c.executed_keys(1)) == 1)
    assert not rep.step(ClientRequest(c.request(5, 2))).reply  # sparse now, 1 pending
    assert rep.quota_refusal(c.request(2, 1), ahead=2, own=2) is None  # the pool short of 4
    held = rep.quota_refusal(c.request(2, 3), ahead=3, own=2)
    assert held is not None and "one request at a time" in held  # sparse-first, not the cap
    assert rep.quota_refusal(c.request(3, 1), ahead=3, own=0) is None  # a fresh client: not busy
