"""Link faults for real testnets: drop, delay and partition chosen links of a running node.

Owns `FaultyTransport`, a Transport wrapper that applies `LinkRules` to every frame sent to or
received from a peer, and the JSON file format that lets a test or the attack runner change the
rules of a live process (polled, so no extra control channel is needed). Only for testnets:
`python -m testnet node` wraps a node's transport in it (`build_node(wrap_transport=...)`);
`bftnode start` never does. Imports of ours: network.transport only.

Rules file (all keys optional; peer indices as strings or ints):
    {"blocked": [2, 3], "drop": {"1": 0.2}, "delay_ms": {"1": 50},
     "egress": {"1": [50, 10, 0.0]}, "rate_kbit": 10000}
`blocked` peers are cut in both directions (a partition is each side blocking the other).
`drop` and `delay_ms` act on frames both ways. `egress` shapes what this node sends to a peer
like a qdisc on its egress (a link profile where the kernel has no netem, testnet/links.py):
[delay ms, jitter ms (normal), frame loss probability]; frames keep their order (they ride one
TCP stream, which never reorders). `rate_kbit` caps this node's whole egress (a token bucket).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
import trio

from network.transport import IncomingSend, Transport

log = structlog.get_logger("testnet.adversary.link_faults")

# frames a shaped link may hold at once (a bound, not a buffer size anyone should reach)
SHAPE_QUEUE_MAX = 4096
Shape = tuple[float, float, float]  # delay ms, jitter ms, loss probability


@dataclass(frozen=True)
class LinkRules:
    blocked: frozenset[int] = frozenset()
    drop: dict[int, float] = field(default_factory=dict)
    delay_ms: dict[int, int] = field(default_factory=dict)
    egress: dict[int, Shape] = field(default_factory=dict)
    rate_kbit: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkRules:
        blocked = frozenset(int(p) for p in data.get("blocked", ()))
        drop = {int(p): float(v) for p, v in data.get("drop", {}).items()}
        delay = {int(p): int(v) for p, v in data.get("delay_ms", {}).items()}
        for p, v in drop.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"drop probability for peer {p} must be in [0, 1], got {v}")
        for p, v in delay.items():
            if not 0 <= v <= 60_000:
                raise ValueError(f"delay for peer {p} must be 0..60000 ms, got {v}")
        egress: dict[int, Shape] = {}
        for p, v in data.get("egress", {}).items():
            d, j, loss = (float(x) for x in v)
            if not (0 <= d <= 60_000 and 0 <= j <= 60_000 and 0.0 <= loss <= 1.0):
                raise ValueError(f"egress shape for peer {p} must be [0..60000 ms, "
                                 f"0..60000 ms, 0..1], got {v}")
            egress[int(p)] = (d, j, loss)
        rate = int(data.get("rate_kbit", 0))
        if rate < 0:
            raise ValueError(f"rate_kbit must be >= 0, got {rate}")
        return cls(blocked, drop, delay, egress, rate)

    def to_json(self) -> dict[str, Any]:
        return {"blocked": sorted(self.blocked), "drop": self.drop, "delay_ms": self.delay_ms,
                "egress": {p: list(v) for p, v in self.egress.items()},
                "rate_kbit": self.rate_kbit}

    def with_shaping(self, egress: dict[int, Shape], rate_kbit: int) -> LinkRules:
        return replace(self, egress=egress, rate_kbit=rate_kbit)


def read_rules(path: str | Path) -> LinkRules:
    """A node's rules file (no file: no rules)."""
    try:
        return LinkRules.from_json(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        return LinkRules()


def write_rules(path: str | Path, rules: LinkRules) -> None:
    """Atomically replace a node's rules file (the node picks it up within a poll interval)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rules.to_json()))
    tmp.replace(path)


class FaultyTransport(Transport):
    """Wraps a Transport; frames to/from a blocked peer vanish, others may be dropped/delayed."""

    def __init__(self, inner: Transport, rules_file: str | Path | None = None,
                 rules: LinkRules | None = None, poll_interval_s: float = 0.2,
                 seed: int | None = None) -> None:
        self.inner = inner
        self.index = inner.index
        self.peer_indices = list(inner.peer_indices)
        self.max_frame_size = inner.max_frame_size
        self.rules = rules or LinkRules()
        self.rules_file = Path(rules_file) if rules_file else None
        self.poll_interval_s = poll_interval_s
        self.dropped: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._mtime: float | None = None
        self._nursery: trio.Nursery | None = None
        # shaped links: a queue and a sender task per peer (frames leave in order)
        self._shaped: dict[int, trio.MemorySendChannel[tuple[float, bytes]]] = {}
        self._last_at: dict[int, float] = {}
        self._egress_free = 0.0  # when the rate-capped egress is next idle
        real = getattr(inner, "_incoming_send", None)
        if isinstance(real, IncomingSend | trio.MemorySendChannel):
            # our transports: filter where the inner transport delivers, so a frame reaches
            # the node through one channel, not through a pump task and a second channel (a
            # task hop per frame, ~2 % of a testnet node's Python time)
            inner._incoming_send = _FilteredSend(self, real)
            self._in_send = real
            self.incoming = inner.incoming
            self._pumped = False
        else:
            self._in_send, self.incoming = trio.open_memory_channel[tuple[int, bytes]](1024)
            self._pumped = True

    # --------------------------------------------------------------- rules

    def set_rules(self, rules: LinkRules) -> None:
        if rules != self.rules:
            log.info("link rules changed", node=self.index, **rules.to_json())
        self.rules = rules

    def _reload(self) -> None:
        if self.rules_file is None:
            return
        try:
            mtime = self.rules_file.stat().st_mtime
        except FileNotFoundError:
            if self._mtime is not None:
                self._mtime = None
                self.set_rules(LinkRules())
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self.set_rules(LinkRules.from_json(json.loads(self.rules_file.read_text())))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("bad link rules file ignored", path=str(self.rules_file), reason=str(exc))

    def _fate(self, peer: int, direction: str) -> int | None:
        """None = drop; otherwise the delay in ms."""
        r = self.rules
        if peer in r.blocked:
            reason = f"blocked_{direction}"
        elif (p := r.drop.get(peer, 0.0)) and self._rng.random() < p:
            reason = f"dropped_{direction}"
        else:
            return r.delay_ms.get(peer, 0)
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return None

    # --------------------------------------------------------------- Transport

    async def send(self, to: int, data: bytes) -> None:
        if to == self.index:
            await self.inner.send(to, data)
            return
        delay = self._fate(to, "out")
        if delay is None:
            return
        r = self.rules
        if (to in r.egress or r.rate_kbit) and self._nursery is not None:
            self._shape(to, data, delay)
            return
        if delay and self._nursery is not None:
            self._nursery.start_soon(self._send_later, delay, to, data)
        else:
            await self.inner.send(to, data)

    def _shape(self, to: int, data: bytes, extra_ms: int) -> None:
        """Queue a frame on its shaped link: it leaves after the link's delay (and jitter), in
        order, and within the node's egress rate."""
        d, j, loss = self.rules.egress.get(to, (0.0, 0.0, 0.0))
        if loss and self._rng.random() < loss:
            self.dropped["lost_out"] = self.dropped.get("lost_out", 0) + 1
            return
        ms = extra_ms + (max(0.0, self._rng.gauss(d, j)) if j else d)
        at = max(trio.current_time() + ms / 1000, self._last_at.get(to, 0.0))
        chan = self._shaped.get(to)
        if chan is None:
            assert self._nursery is not None
            chan, recv = trio.open_memory_channel[tuple[float, bytes]](SHAPE_QUEUE_MAX)
            self._shaped[to] = chan
            self._nursery.start_soon(self._shaped_link, to, recv)
        try:
            chan.send_nowait((at, data))
        except trio.WouldBlock:
            self.dropped["shaped_queue_full"] = self.dropped.get("shaped_queue_full", 0) + 1
            return
        self._last_at[to] = at

    async def _shaped_link(self, to: int, recv: trio.MemoryReceiveChannel) -> None:
        async for at, data in recv:
            await trio.sleep_until(at)
            rate = self.rules.rate_kbit
            if rate:  # the frame's bytes leave at the rate, after those queued before it
                start = max(trio.current_time(), self._egress_free)
                self._egress_free = start + len(data) * 8 / (rate * 1000)
                await trio.sleep_until(self._egress_free)
            await self.inner.send(to, data)

    async def _send_later(self, delay_ms: int, to: int, data: bytes) -> None:
        await trio.sleep(delay_ms / 1000)
        await self.inner.send(to, data)

    async def _deliver_later(self, delay_ms: int, item: tuple[int, bytes]) -> None:
        await trio.sleep(delay_ms / 1000)
        try:
            self._in_send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped["incoming_full"] = self.dropped.get("incoming_full", 0) + 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._reload()
            await nursery.start(self.inner.run)
            if self._pumped:
                nursery.start_soon(self._pump)
            nursery.start_soon(self._poll)
            task_status.started()

    async def _poll(self) -> None:
        while True:
            await trio.sleep(self.poll_interval_s)
            self._reload()

    def _admit(self, item: tuple[int, bytes]) -> bool:
        """An inbound frame: True = deliver now; False = dropped, or delivered later."""
        peer = item[0]
        delay = 0 if peer == self.index else self._fate(peer, "in")
        if delay is None:
            return False
        if delay and self._nursery is not None:
            self._nursery.start_soon(self._deliver_later, delay, item)
            return False
        return True

    async def _pump(self) -> None:
        """A transport whose delivery channel we cannot filter: one more hop per frame."""
        async for item in self.inner.incoming:
            if self._admit(item):
                await self._in_send.send(item)

    def peer_stats(self) -> dict[int, dict[str, Any]]:
        stats = self.inner.peer_stats()
        for peer, s in stats.items():
            s["link_blocked"] = peer in self.rules.blocked
        return stats

    def queue_depth(self, peer: int) -> int:
        return self.inner.queue_depth(peer)

    def report_invalid(self, peer: int, reason: str = "undecodable") -> None:
        self.inner.report_invalid(peer, reason)


class _FilteredSend:
    """Stands in for an inner transport's incoming send channel: each frame passes the
    wrapper's inbound rules before it reaches the real channel (same back-pressure)."""

    def __init__(self, faulty: FaultyTransport, real: trio.MemorySendChannel) -> None:
        self._faulty = faulty
        self._real = real

    async def send(self, item: tuple[int, bytes]) -> None:
        if self._faulty._admit(item):
            await self._real.send(item)

    def send_nowait(self, item: tuple[int, bytes]) -> None:
        if self._faulty._admit(item):
            self._real.send_nowait(item)

    def __getattr__(self, name: str) -> Any:  # close(), statistics(), ...
        return getattr(self._real, name)
