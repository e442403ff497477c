"""Normal-case rules as pure helpers: request admission, client dedup, pre-prepare acceptance
checks, and what a committed batch executes (skips and agreed block time).

The control flow that uses them lives in `replica.Replica.step`. Pure; imports stdlib and
consensus only.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from .auth import Authenticator
from .codec import batch_digest
from .messages import PrePrepare, Request
from .types import Config, request_size

CLIENT_ID_LEN = 32


def check_request(config: Config, auth: Authenticator, req: Request) -> str | None:
    """State-free validity of a client request: shape, size and client signature."""
    if not isinstance(req, Request):
        return "not a request"
    if len(req.client_id) != CLIENT_ID_LEN:
        return "client_id must be a 32-byte public key"
    if req.request_seq < 0 or req.valid_until < 0:
        return "negative request_seq or valid_until"
    if len(req.op) > config.max_request_bytes:
        return f"op of {len(req.op)} bytes exceeds max_request_bytes={config.max_request_bytes}"
    if not auth.verify_request(req):
        return "bad client signature"
    return None


def expired(req: Request, seq: int) -> bool:
    """A request may only execute at seq <= valid_until (0 = no limit)."""
    return req.valid_until != 0 and seq > req.valid_until


class ClientTable:
    """Per client: the request_seqs executed within `dedup_window` below the client's max."""

    def __init__(self, window: int, restored: dict[bytes, tuple[int, ...]] | None = None) -> None:
        self.window = window
        self._executed: dict[bytes, set[int]] = {}
        self._heaps: dict[bytes, list[int]] = {}  # the same seqs, smallest first (for pruning)
        self._max: dict[bytes, int] = {}
        for client, seqs in (restored or {}).items():
            for s in seqs:
                self.record(client, s)

    def status(self, client: bytes, request_seq: int) -> str | None:
        """None if the request may still execute, else "duplicate" or "request_seq too old"."""
        top = self._max.get(client)
        if top is None:
            return None
        if request_seq in self._executed[client]:
            return "duplicate"
        if request_seq < top - self.window:
            return "request_seq too old"
        return None

    def record(self, client: bytes, request_seq: int) -> None:
        seqs = self._executed.get(client)
        if seqs is None:
            seqs = self._executed[client] = set()
            self._heaps[client] = []
        if request_seq in seqs:
            return
        seqs.add(request_seq)
        heap = self._heaps[client]
        heapq.heappush(heap, request_seq)
        top = self._max.get(client, request_seq)
        if request_seq >= top:
            self._max[client] = request_seq
            # amortised O(log n) per record (was a scan of the whole window per record)
            floor = request_seq - self.window
            while heap and heap[0] < floor:
                seqs.discard(heapq.heappop(heap))

    def snapshot(self) -> dict[bytes, tuple[int, ...]]:
        return {c: tuple(sorted(s)) for c, s in self._executed.items()}


def check_pre_prepare(
    config: Config,
    auth: Authenticator,
    pp: PrePrepare,
    now_ms: int,
    check_time: bool = True,
    already_verified: Callable[[Request], bool] | None = None,
) -> str | None:
    """Content checks a backup applies to a pre-prepare (sender, view and window are checked
    by the caller): digest, client signatures, and the proposed time against the local clock."""
    if pp.digest != batch_digest(pp.time_ms, pp.requests):
        return "digest does not match the batch"
    if len(pp.requests) > config.batch_max:
        return f"batch of {len(pp.requests)} exceeds batch_max={config.batch_max}"
    size = sum(request_size(len(r.op)) for r in pp.requests)
    if size > config.batch_max_bytes:
        return f"batch of {size} bytes exceeds batch_max_bytes={config.batch_max_bytes}"
    for req in pp.requests:
        if already_verified is not None and already_verified(req):
            continue  # the same signed request passed check_request when we admitted it
        reason = check_request(config, auth, req)
        if reason:
            return f"invalid request in batch: {reason}"
    if check_time:
        if pp.time_ms > now_ms + config.max_clock_skew_ms:
            return f"time {pp.time_ms} too far ahead of local time {now_ms}"
    return None


def is_stale(config: Config, pp: PrePrepare, now_ms: int) -> bool:
    """A pre-prepare older than the skew plus one request timeout. Not evidence: frames queued
    for a restarting or partitioned replica legitimately arrive late. Dropped, because voting
    for a block time that far in the past would let a lagging primary hold time back (it gets
    replaced by the request timers anyway)."""
    return pp.time_ms < now_ms - config.max_clock_skew_ms - config.timeout_request_ms


def split_batch(
    requests: tuple[Request, ...], seq: int, clients: ClientTable
) -> tuple[tuple[Request, ...], tuple[tuple[Request, str], ...]]:
    """Which requests of a committed batch execute at `seq`, and which are skipped (with the
    reason). Deterministic: depends only on the batch, seq and the executed history."""
    run: list[Request] = []
    skipped: list[tuple[Request, str]] = []
    seen: set[tuple[bytes, int]] = set()
    for req in requests:
        key = (req.client_id, req.request_seq)
        if key in seen or clients.status(*key) is not None:
            skipped.append((req, "duplicate"))
        elif expired(req, seq):
            skipped.append((req, "expired"))
        else:
            run.append(req)
            seen.add(key)
    return tuple(run), tuple(skipped)


def block_time(prev_time_ms: int, proposed_ms: int) -> int:
    """Agreed block time: strictly increasing, the primary's proposal when it is later."""
    return max(prev_time_ms + 1, proposed_ms)
