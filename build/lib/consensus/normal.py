"""Normal-case rules as pure helpers: request admission, client dedup, pre-prepare acceptance
checks, and what a committed batch executes (skips and agreed block time).

The control flow that uses them lives in `replica.Replica.step`. Pure; imports stdlib and
consensus only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from .auth import Authenticator
from .codec import batch_digest
from .evidence import check_evidence
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
    return check_evidence(auth, config.n, req)


def expired(req: Request, seq: int) -> bool:
    """A request may only execute at seq <= valid_until (0 = no limit)."""
    return req.valid_until != 0 and seq > req.valid_until


class ClientTable:
    """Per client: its highest executed request_seq (top) and which of the `window` seqs
    top-window+1..top executed, as a bitmap (bit i: top-i executed): ~0.8 KB per client with
    a full 4,096-seq window, entry included (a set and a heap of the same seqs took ~250 KB).

    Bounded: at most `capacity` clients, least recently executed evicted first. The table is a
    cache of the executed history, which storage holds in full: once a client was evicted
    (or a restart restored only some), a client missing from the table may have history, and
    the replica asks its shell to load it (`LoadClients`) before executing a batch with it.
    `complete` says no client was ever left out, so a missing client has none."""

    def __init__(
        self,
        window: int,
        restored: dict[bytes, tuple[int, ...]] | None = None,
        capacity: int = 0,
        complete: bool = True,
    ) -> None:
        self.window = window
        self.capacity = capacity  # 0 = unbounded
        self._mask = (1 << window) - 1
        # client -> [top, bitmap], least recently executed first
        self._entries: OrderedDict[bytes, list[int]] = OrderedDict()
        self.complete = complete
        # executions at or below this seq may be missing from the table (evicted): a load
        # must reflect storage through it
        self.evicted_through = 0
        self.evictions = 0
        for client, seqs in (restored or {}).items():
            for s in sorted(seqs):
                self.record(client, s)
        self.evict(0)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, client: bytes) -> bool:
        return client in self._entries

    def status(self, client: bytes, request_seq: int) -> str | None:
        """None if the request may still execute, else "duplicate" or "request_seq too old".
        A client missing from the table gets None: see `missing`."""
        e = self._entries.get(client)
        if e is None:
            return None
        i = e[0] - request_seq
        if i < 0:
            return None
        if i >= self.window:
            return "request_seq too old"
        return "duplicate" if e[1] >> i & 1 else None

    def missing(self, clients: Iterable[bytes]) -> list[bytes]:
        """Clients whose history must be loaded before their requests can be judged."""
        if self.complete:
            return []
        out: list[bytes] = []
        for c in clients:
            if c not in self._entries and c not in out:
                out.append(c)
        return out

    def record(self, client: bytes, request_seq: int) -> None:
        e = self._entries.get(client)
        if e is None:
            self._entries[client] = [request_seq, 1]
            return
        self._entries.move_to_end(client)
        d = request_seq - e[0]
        if d > 0:
            e[0] = request_seq
            e[1] = ((e[1] << d) | 1) & self._mask if d < self.window else 1
        elif -d < self.window:
            e[1] |= 1 << -d

    def evict(self, executed_through: int) -> int:
        """Drop the least recently executed clients beyond `capacity`; returns how many.
        `executed_through`: the last executed seq (every eviction may hide executions up to
        it)."""
        n = 0
        while self.capacity and len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            n += 1
        if n:
            self.complete = False
            self.evicted_through = max(self.evicted_through, executed_through)
            self.evictions += n
        return n

    def load(self, client: bytes, executed: Iterable[int]) -> None:
        """Install a client's history read from storage (its executed seqs; only the window
        below the highest matters). A client already in the table is left alone: the table
        is never older than storage."""
        if client in self._entries:
            return
        seqs = sorted(executed)
        if not seqs:
            # no history: an entry with top -1 says so (the first record replaces it)
            self._entries[client] = [-1, 0]
            return
        for s in seqs[-self.window:]:
            self.record(client, s)

    def snapshot(self) -> dict[bytes, tuple[int, ...]]:
        out = {}
        for c, (top, bits) in self._entries.items():
            if top < 0:
                continue
            out[c] = tuple(top - i for i in range(min(self.window, top + 1) - 1, -1, -1)
                           if bits >> i & 1)
        return out


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
