"""Basic consensus types and the replica configuration.

Owns: ids, views, sequence numbers, digests and `Config`. Imports the standard library and the
wire bounds of `consensus.messages` (a config our messages could not carry is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import MAX_BATCH_REQUESTS, MAX_REPLICAS, MAX_WINDOW

ReplicaId = int
View = int
Seq = int
Digest = bytes
ClientId = bytes  # the client's Ed25519 public key (32 bytes)

REQUEST_OVERHEAD_BYTES = 160  # a request's encoding beyond its op (keys, seqs, signature)


# upper bounds of encoded sizes (tests/unit/consensus/test_pbft_view_change_size.py checks them
# against messages with the largest field values): VIEW-CHANGE and NEW-VIEW carry headers and
# votes only, so their size depends on n and the window, never on the batches
HEADER_BYTES = 192  # a PRE-PREPARE without its requests
VOTE_BYTES = 160  # a PREPARE, COMMIT or CHECKPOINT
VIEW_MESSAGE_OVERHEAD = 128
FRAME_LIMIT_BYTES = 8 * 1024 * 1024  # codec.MAX_MESSAGE_BYTES


def view_change_bytes(n: int, window: int) -> int:
    """Largest VIEW-CHANGE: a checkpoint proof plus a prepared proof (header + 2f prepares)
    for every seq of the window."""
    f = (n - 1) // 3
    return VIEW_MESSAGE_OVERHEAD + n * VOTE_BYTES + window * (HEADER_BYTES + 2 * f * VOTE_BYTES)


def new_view_bytes(n: int, window: int) -> int:
    """Largest NEW-VIEW: 2f+1 VIEW-CHANGEs plus a re-proposed header for every seq."""
    f = (n - 1) // 3
    return VIEW_MESSAGE_OVERHEAD + (2 * f + 1) * view_change_bytes(n, window) + \
        window * HEADER_BYTES


def request_size(op_len: int) -> int:
    """Bytes a request of `op_len` op bytes counts for in batch and relay limits."""
    return op_len + REQUEST_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Config:
    """Static consensus parameters; identical on every replica (part of genesis)."""

    n: int = 4
    checkpoint_interval: int = 16
    # A VIEW-CHANGE carries the full PRE-PREPARE of every prepared slot above the stable
    # checkpoint (up to watermark_window of them) and a NEW-VIEW carries 2f+1 of those, so
    # watermark_window * batch_max bounds their size: 32 * 200 requests holds as
    # many requests as 64 * 100 (~2 MB per VIEW-CHANGE at ~300-B txs), with half the blocks per tx
    # (saturated: ~5 % more tx/s, docs/perf/history.md). 400-request batches with
    # a 32-slot window would bring a NEW-VIEW near the 8 MiB message limit under load.
    watermark_window: int = 32
    batch_max: int = 200
    # a batch also stops growing at this many request bytes (a PRE-PREPARE must stay far below
    # the 8 MiB message limit whatever the tx sizes)
    batch_max_bytes: int = 1024 * 1024
    batch_delay_ms: int = 2
    # pipeline depth: the primary proposes a non-full batch only while fewer than this many of
    # its batches await local execution (full batches: up to the high watermark; 0 = no cap).
    # 1: below saturation, requests that arrive while a batch runs join the next one, so a
    # slower machine makes fuller blocks instead of a queue of small ones (measured: p50 at
    # 200 tx/s 76-114 ms vs 153-261 ms with 4, saturated tx/s the same)
    max_in_flight: int = 1
    # full batches in flight at most (0 = up to the high watermark): a new request waits for
    # every batch in flight ahead of it, so a deep pipeline is latency under a backlog
    max_full_in_flight: int = 0
    # a backup suspects the primary when a request of ours sees no progress this long
    # (request_timer.py), or at once when the primary falls silent: nothing heard from it for
    # 1.5 status intervals (primary_watch.py; a dead primary costs ~0.5-1 s, not this timer).
    # 1 s here made the honest load alone change views under a 2 KB-put burst (burst-kill-primary)
    timeout_request_ms: int = 2_000
    # the first view change's timeout after 2f+1 VIEW-CHANGEs (then doubled per failed one, up
    # to timeout_max_ms): only a new primary that is faulty too waits for it
    timeout_view_change_ms: int = 1_000
    timeout_max_ms: int = 30_000
    status_interval_ms: int = 500
    heartbeat_ms: int = 1_000  # primary proposes an empty batch when idle this long (0 = off)
    max_clock_skew_ms: int = 2_000
    # >0: a backup sends its clients' requests to the primary, and to every replica only if
    # the primary has not proposed them this much later while not working through ours
    # (capped at timeout_request_ms / 4; see Replica._relay_unproposed): PBFT's relay, ~20 %
    # fewer mesh bytes per tx at saturation (docs/perf/history.md). 0 = to every
    # replica at once
    forward_relay_ms: int = 500
    max_pending_requests: int = 100_000
    # requests one client id may hold in the pool (any source); 0 = no bound. Set by the node
    # from the genesis `app.quotas.max_pending` (Genesis.config), not from `consensus`
    max_pending_per_client: int = 0
    # request bytes (plus per-object overhead) in the pending pool; each source (our clients,
    # each relaying replica) may hold 1/n of it, so one relay cannot fill the pool
    max_pending_bytes: int = 64 * 1024 * 1024
    # sparse clients first (fair.SparseFirst): while a client with one request at a time is
    # active and the pool holds this many requests or more, clients that hold some already
    # get no more admitted from us (refused `client quota`; they retry). 0 = off; the node
    # turns it on (Genesis.config: SPARSE_BACKLOG unless the genesis says otherwise)
    sparse_backlog: int = 0
    # each source's admission rate (our clients; each relaying replica), per second: the
    # floor in requests and request bytes; a source may go up to twice the mean rate of the
    # others (consensus.fair.SourceRates), so spread load runs at capacity while one source
    # alone at link speed (a relaying validator) gets the floor. A token bucket
    # `source_burst_ms` deep (our own clients: half of it). Over it: a relay's requests are
    # dropped unverified, our clients' refused "rate limited". 0 = no limit
    source_rate_requests: int = 200
    source_rate_bytes: int = 72 * 1024
    source_burst_ms: int = 2_000
    max_request_bytes: int = 64 * 1024
    dedup_window: int = 4096  # per client: request_seqs <= max - window are refused
    # clients kept in the dedup table (~0.6 KB each at window 4,096); the least recently
    # executed are evicted and loaded back from storage when they return (LoadClients)
    max_clients: int = 16_384
    # sign each executed block's post-execution roots (StateVote) and collect 2f+1 of them
    # into state certificates (consensus.state_votes); the node turns it on with
    # authenticated_state. Not part of genesis: a replica with it off ignores StateVotes
    state_votes: bool = False

    def __post_init__(self) -> None:
        if self.n < 4 or (self.n - 1) % 3 != 0:
            raise ValueError(f"n must be 3f+1 with f >= 1, got n={self.n}")
        if self.n > MAX_REPLICAS:
            raise ValueError(f"n must be at most {MAX_REPLICAS}, got n={self.n}")
        if self.watermark_window > MAX_WINDOW:
            raise ValueError(f"watermark_window must be at most {MAX_WINDOW}")
        if new_view_bytes(self.n, self.watermark_window) > FRAME_LIMIT_BYTES // 2:
            raise ValueError(
                f"a NEW-VIEW for n={self.n} and watermark_window={self.watermark_window} could "
                f"reach {new_view_bytes(self.n, self.watermark_window)} bytes, over half the "
                f"{FRAME_LIMIT_BYTES}-byte message limit: use a smaller window")
        if self.batch_max > MAX_BATCH_REQUESTS:
            raise ValueError(f"batch_max must be at most {MAX_BATCH_REQUESTS}")
        if self.watermark_window < 2 * self.checkpoint_interval:
            raise ValueError("watermark_window must be at least 2 * checkpoint_interval")
        if self.watermark_window % self.checkpoint_interval != 0:
            raise ValueError("watermark_window must be a multiple of checkpoint_interval")
        if self.batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        if self.batch_max_bytes < self.max_request_bytes + REQUEST_OVERHEAD_BYTES:
            raise ValueError("batch_max_bytes must hold at least one request of "
                             "max_request_bytes")
        if self.max_pending_bytes < self.n * 2 * request_size(self.max_request_bytes):
            raise ValueError("max_pending_bytes must hold two requests of max_request_bytes "
                             "per replica")
        if self.forward_relay_ms < 0:
            raise ValueError(f"forward_relay_ms must be >= 0, got {self.forward_relay_ms}")
        if min(self.source_rate_requests, self.source_rate_bytes, self.source_burst_ms) < 0:
            raise ValueError("source_rate_requests, source_rate_bytes and source_burst_ms must "
                             "be >= 0")
        if 0 < self.source_rate_bytes * self.source_burst_ms // 2000 < request_size(
                self.max_request_bytes):
            raise ValueError("source_rate_bytes * source_burst_ms / 2 s must hold a request of "
                             "max_request_bytes")
        if self.max_pending_per_client < 0:
            raise ValueError("max_pending_per_client must be >= 0 (0 = no bound)")
        if self.dedup_window < 1:
            raise ValueError(f"dedup_window must be >= 1, got {self.dedup_window}")
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {self.max_clients}")
        if self.sparse_backlog < 0:
            raise ValueError("sparse_backlog must be >= 0 (0 = off)")
        if self.max_full_in_flight < 0:
            raise ValueError("max_full_in_flight must be >= 0 (0 = up to the high watermark)")
        if self.max_in_flight < 0:
            raise ValueError(f"max_in_flight must be >= 0 (0 = no cap), got {self.max_in_flight}")

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """2f+1: prepare/commit/checkpoint/view-change quorum."""
        return 2 * self.f + 1

    @property
    def weak_quorum(self) -> int:
        """f+1: at least one honest replica."""
        return self.f + 1

    def primary(self, view: View) -> ReplicaId:
        return view % self.n
