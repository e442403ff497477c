"""The pending requests not yet in a batch of this view: oldest first for timers, round-robin
for batching.

A primary fills batches one request at a time over the sources (its own clients, each
relaying replica) in rotation and, within a source, over its clients in rotation, each client's
requests in arrival order. So a relay or a client with a deep queue gets one turn per round,
not the whole batch; the byte share per source (Replica._admit) bounds how much each may queue.
The rotation is built only when a batch is taken (a backup never takes one) and is rebuilt
when stale entries outnumber live ones.
`SourceRates` is the admission side: a token bucket per source (requests and bytes per
second, sized from what the chain executed recently) that Replica._admit and on_forward consult
before a request enters the queue. `SparseFirst` keeps the backlog short for sparse clients
(one request at a time) while busy ones (several pending) would fill it.
Pure: stdlib only.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

Key = tuple[bytes, int]  # (client_id, request_seq)


class FairQueue:
    __slots__ = ("_order", "_rotation", "_stale", "nbytes", "_per_source")

    def __init__(self, items: Iterable[tuple[Key, int, int]] = ()) -> None:
        # key -> (source, request bytes), in arrival order
        self._order: OrderedDict[Key, tuple[int, int]] = OrderedDict()
        # source -> client -> that client's keys; None until the first pick
        self._rotation: OrderedDict[int, OrderedDict[bytes, deque[Key]]] | None = None
        self._stale = 0  # keys left in the rotation after they were discarded
        self.nbytes = 0  # request bytes of the keys held (is a full batch waiting?)
        # each source's keys in arrival order (its oldest: when is its batch due?)
        self._per_source: dict[int, dict[Key, None]] = {}
        for key, source, size in items:
            self._order[key] = (source, size)
            self.nbytes += size
            self._per_source.setdefault(source, {})[key] = None

    def __len__(self) -> int:
        return len(self._order)

    def __bool__(self) -> bool:
        return bool(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def oldest(self) -> Key:
        return next(iter(self._order))

    def sources(self) -> set[int]:
        """The sources with a request waiting."""
        return set(self._per_source)

    def oldest_by_source(self) -> list[tuple[int, Key]]:
        """Each source with a request waiting, and its oldest."""
        return [(src, next(iter(keys))) for src, keys in self._per_source.items()]

    def _gone(self, source: int, key: Key) -> None:
        keys = self._per_source[source]
        del keys[key]
        if not keys:
            del self._per_source[source]

    def add(self, key: Key, source: int, size: int) -> None:
        if key in self._order:
            return
        self._order[key] = (source, size)
        self.nbytes += size
        self._per_source.setdefault(source, {})[key] = None
        if self._rotation is not None:
            self._rotation.setdefault(source, OrderedDict()).setdefault(key[0], deque()).append(key)

    def discard(self, key: Key) -> None:
        entry = self._order.pop(key, None)
        if entry is None:
            return
        self.nbytes -= entry[1]
        self._gone(entry[0], key)
        if self._rotation is not None:
            self._stale += 1
            if self._stale > max(1024, len(self._order)):
                self._rotation = None  # rebuilt at the next pick

    def pick(self) -> Key | None:
        """The next key in fair order (not removed: `take` it to move the rotation on)."""
        if not self._order:
            return None
        rot = self._rotation
        if rot is None:
            rot = self._rotation = self._build()
        while rot:
            source, clients = next(iter(rot.items()))
            while clients:
                client, keys = next(iter(clients.items()))
                while keys and keys[0] not in self._order:
                    keys.popleft()
                    self._stale -= 1
                if keys:
                    return keys[0]
                del clients[client]
            del rot[source]
        return None

    def take(self, key: Key) -> None:
        """Remove `key`, which `pick` just returned, and give its client and source the back of
        their rotations."""
        source, size = self._order.pop(key)
        self.nbytes -= size
        self._gone(source, key)
        rot = self._rotation
        assert rot is not None
        clients = rot[source]
        keys = clients[key[0]]
        keys.popleft()
        if keys:
            clients.move_to_end(key[0])
        else:
            del clients[key[0]]
        if clients:
            rot.move_to_end(source)
        else:
            del rot[source]

    def _build(self) -> OrderedDict[int, OrderedDict[bytes, deque[Key]]]:
        self._stale = 0
        rot: OrderedDict[int, OrderedDict[bytes, deque[Key]]] = OrderedDict()
        for key, (source, _) in self._order.items():
            rot.setdefault(source, OrderedDict()).setdefault(key[0], deque()).append(key)
        return rot


class SourceRates:
    """Each source's admission rate (sources: our clients, each relaying replica - replica
    ids, at most n): a token bucket per source over requests and request bytes, refilled with
    time (an input, in ms). The pool share bounds what a source may QUEUE; this bounds what it
    may feed the chain per second.

    A source's rate is max(floor, SHARE_FACTOR x the mean rate of the OTHER sources over the
    last full window (a quarter of `burst_ms`)), the others' rate being what the chain executed minus what
    we admitted from this source (every replica sees the executed blocks, while a backup sees
    few of the others' relays). So when every source is busy (clients spread over the
    validators) each ramps up to what the others do and the chain runs at capacity; one source
    alone at link speed (a relaying validator, or one gateway node) gets the floor, a slice of
    the chain, and the others' requests keep their latency. f colluding relays cannot lift
    each other past the floor while SHARE_FACTOR * f < n - 1.

    Integer milli-tokens: deterministic. A floor of 0 switches that dimension off.
    `burst_ms` is also the bucket's depth: a source idle that long may send that much at once
    (`take(..., half=True)`: half of it, for our own clients, so what an honest replica relays
    stays inside what its peers admit from it)."""

    SHARE_FACTOR = 2
    LIGHT_RESERVE = 8  # 1/8 of each bucket is for requests of clients with none pending

    __slots__ = ("per_s", "bytes_per_s", "burst_ms", "window_ms", "n", "_buckets", "_window",
                 "_counts",
                 "_last", "_executed", "_executed_last", "_refused_at")

    def __init__(self, per_s: int, bytes_per_s: int, burst_ms: int, n: int) -> None:
        self.per_s = per_s
        self.bytes_per_s = bytes_per_s
        self.burst_ms = max(1, burst_ms)
        # rates are measured over a quarter of the burst: busy sources ramp up (x2 a window)
        # in a few hundred ms, not seconds
        self.window_ms = max(1, self.burst_ms // 4)
        self.n = n
        self._buckets: dict[int, tuple[int, int, int]] = {}  # source -> (req, bytes, at_ms)
        self._window = 0  # start of the current measuring window
        self._counts: dict[int, tuple[int, int]] = {}  # this window: source -> (req, bytes)
        self._last: dict[int, tuple[int, int]] = {}  # the last full window's counts
        self._executed = (0, 0)  # requests and bytes the chain executed, this window
        self._executed_last = (0, 0)  # ... in the last full window
        self._refused_at: dict[int, int] = {}  # source -> when a take() last failed

    @property
    def off(self) -> bool:
        return self.per_s <= 0 and self.bytes_per_s <= 0

    def _roll(self, now_ms: int) -> None:
        if now_ms - self._window >= self.window_ms:
            full = now_ms - self._window < 2 * self.window_ms  # else an idle window came between
            self._last = self._counts if full else {}
            self._executed_last = self._executed if full else (0, 0)
            self._counts = {}
            self._executed = (0, 0)
            self._window = now_ms

    def executed(self, now_ms: int, count: int, nbytes: int) -> None:
        """The chain executed `count` requests of `nbytes` request bytes (every source's)."""
        self._roll(now_ms)
        self._executed = (self._executed[0] + count, self._executed[1] + nbytes)

    def limits(self, source: int) -> tuple[int, int]:
        """`source`'s current rate: (requests/s, bytes/s)."""
        own_r, own_b = self._last.get(source, (0, 0))
        others_r = max(0, self._executed_last[0] - own_r)
        others_b = max(0, self._executed_last[1] - own_b)
        span = (self.n - 1) * self.window_ms  # -> per ms of the window, per other source
        k = self.SHARE_FACTOR
        return (max(self.per_s, k * others_r * 1000 // span) if self.per_s > 0 else 0,
                max(self.bytes_per_s, k * others_b * 1000 // span) if self.bytes_per_s > 0
                else 0)

    def _level(self, source: int, now_ms: int, half: bool) -> tuple[int, int, int, int, int]:
        """`source`'s rates and its bucket refilled to now: (rate_r, rate_b, req, bytes, at)."""
        self._roll(now_ms)
        rate_r, rate_b = self.limits(source)
        depth = self.burst_ms // 2 if half else self.burst_ms
        entry = self._buckets.get(source)
        if entry is None:
            return rate_r, rate_b, rate_r * depth, rate_b * depth, now_ms
        req, nbytes, at = entry
        dt = max(0, now_ms - at)
        return (rate_r, rate_b, min(rate_r * depth, req + rate_r * dt),
                min(rate_b * depth, nbytes + rate_b * dt), at)

    def _holds(self, rate_r: int, rate_b: int, req: int, nbytes: int, size: int,
               light: bool, half: bool) -> bool:
        if not light:  # the bottom of the bucket is kept for light requests
            depth = (self.burst_ms // 2 if half else self.burst_ms) // self.LIGHT_RESERVE
            req -= rate_r * depth
            nbytes -= rate_b * depth
        return (rate_r <= 0 or req >= 1000) and (rate_b <= 0 or nbytes >= size * 1000)

    def can_take(self, source: int, now_ms: int, size: int, light: bool = True) -> bool:
        """Would `take` admit a request of `size` bytes from `source` now (nothing taken)?"""
        if self.off:
            return True
        rate_r, rate_b, req, nbytes, _ = self._level(source, now_ms, False)
        return self._holds(rate_r, rate_b, req, nbytes, size, light, False)

    def take(self, source: int, now_ms: int, size: int, half: bool = False,
             light: bool = True) -> bool:
        """Admit one request of `size` bytes from `source` now, if its bucket holds it. A
        request that is not `light` (its client has requests pending already) leaves the
        bottom 1/LIGHT_RESERVE of the bucket to light ones: a few flooding clients that drain a
        source's bucket do not shut out its other clients' requests, one at a time each."""
        if self.off:
            return True
        rate_r, rate_b, req, nbytes, at = self._level(source, now_ms, half)
        ok = self._holds(rate_r, rate_b, req, nbytes, size, light, half)
        if ok:
            req -= 1000 if rate_r > 0 else 0
            nbytes -= size * 1000 if rate_b > 0 else 0
            r, b = self._counts.get(source, (0, 0))
            self._counts[source] = (r + 1, b + size)
        else:
            self._refused_at[source] = now_ms
        self._buckets[source] = (req, nbytes, max(now_ms, at))
        return ok

    def throttled(self, source: int, now_ms: int) -> bool:
        """`source` sent past its rate within the last `burst_ms`: it has more than its share
        to send, so its requests can wait to ride in the others' batches."""
        at = self._refused_at.get(source)
        return at is not None and now_ms - at < self.burst_ms

    def give(self, source: int, size: int) -> None:
        """Return what `take` just took (the request was not admitted after all)."""
        entry = self._buckets.get(source)
        if entry is None or self.off:
            return
        req, nbytes, at = entry
        self._buckets[source] = (req + 1000, nbytes + size * 1000, at)
        r, b = self._counts.get(source, (1, size))
        self._counts[source] = (max(0, r - 1), max(0, b - size))


class SparseFirst:
    """Sparse clients first. A client that sends a request while it already holds one in the
    pool is *busy* for `window_ms`; one whose request finds none of its own pending, twice
    within `window_ms` and not busy meanwhile, is *sparse* (a sequential client; a fresh key's
    single request, or a busy client's first, is neither). While a sparse client sent
    something within `window_ms` and the pool holds `backlog` requests or more, busy clients
    get nothing more admitted from us (Replica._admit: refused `client quota`, retried by the
    client), so the batches ahead of a sparse client's next request stay few and small: its
    latency stays near the quiet one whatever the busy clients send (fair batching alone
    cannot remove the batches already ordered ahead). Busy clients alone (no sparse one) are
    not held back. `backlog` 0: off. At most `kept` clients of each kind are remembered (the
    oldest go)."""

    __slots__ = ("backlog", "window_ms", "kept", "_busy", "_seen", "_sparse_at")

    def __init__(self, backlog: int, window_ms: int = 2_000, kept: int = 65_536) -> None:
        self.backlog = backlog
        self.window_ms = window_ms
        self.kept = kept
        self._busy: OrderedDict[bytes, int] = OrderedDict()  # client -> busy until (ms)
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # client -> last lone request
        self._sparse_at = -(1 << 62)

    def note(self, client: bytes, held: int, now: int) -> None:
        """A request of `client` enters the pool, which held `held` of its requests."""
        if not self.backlog:
            return
        if held:
            self.mark_busy(client, now)
            return
        if self.busy(client, now):
            return
        last = self._seen.get(client)
        if last is not None and now - last <= self.window_ms:
            self._sparse_at = now
        _remember(self._seen, client, now, self.kept)

    def mark_busy(self, client: bytes, now: int) -> None:
        """`client`'s (verified) request was refused for load: it offers more than it gets
        in, so it is busy, whatever it holds (a throttled client's requests, admitted one by
        one, would otherwise look sparse)."""
        if self.backlog:
            self._seen.pop(client, None)
            _remember(self._busy, client, now + self.window_ms, self.kept)

    def busy(self, client: bytes, now: int) -> bool:
        until = self._busy.get(client)
        if until is None:
            return False
        if until < now:
            del self._busy[client]
            return False
        return True

    def holds_back(self, client: bytes, pool: int, now: int, busy: bool = False) -> bool:
        """Whether a new request of `client` waits: it is busy (or `busy`: it will be by the
        time this request comes), a sparse client is active and the pool holds `backlog`
        requests or more."""
        return (bool(self.backlog) and pool >= self.backlog
                and now - self._sparse_at <= self.window_ms
                and (busy or self.busy(client, now)))


def _remember(d: OrderedDict[bytes, int], client: bytes, value: int, kept: int) -> None:
    d[client] = value
    d.move_to_end(client)
    while len(d) > kept:
        d.popitem(last=False)
