"""Fair shares at the primary (issue 36): requests relayed by a replica are batched round-robin
with the primary's own clients and other relays, so one relay with a deep queue of valid
requests cannot crowd out everyone else."""

from __future__ import annotations

from consensus import ClientRequest, Receive
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


def test_requests_relayed_past_the_relay_pool_share_are_dropped_before_verifying(cluster_cls):
    c = cluster_cls(max_pending_bytes=4 * 2 * (64 * 1024 + 160))  # a share of 2 big requests
    backup = c.replicas[1]
    reqs = tuple(c.request(100 + i, 1, op=b"x" * 60_000) for i in range(10))
    verified = []
    verify = backup.auth.verifier.verify

    def counting(*args):
        verified.append(1)
        return verify(*args)

    backup.auth.verifier.verify = counting
    backup.step(Receive(3, c.auth(3).sign(Forward(reqs, 3))))
    assert backup.pending_count == 2
    assert backup.dropped["forwarded-request-over-share"] == 8
    assert 1 <= len(verified) <= 3  # the FORWARD's own signature and the 2 admitted requests
