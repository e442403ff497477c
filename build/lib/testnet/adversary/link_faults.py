"""Link faults for real testnets: drop, delay and partition chosen links of a running node.

Owns `FaultyTransport`, a Transport wrapper that applies `LinkRules` to every frame sent to or
received from a peer, and the JSON file format that lets a test or the attack runner change the
rules of a live process (polled, so no extra control channel is needed). Only for testnets:
`python -m testnet node` wraps a node's transport in it (`build_node(wrap_transport=...)`);
`bftnode start` never does. Imports of ours: network.transport only.

Rules file (all keys optional; peer indices as strings or ints):
    {"blocked": [2, 3], "drop": {"1": 0.2}, "delay_ms": {"1": 50}}
`blocked` peers are cut in both directions (a partition is each side blocking the other).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from network.transport import IncomingSend, Transport

log = structlog.get_logger("testnet.adversary.link_faults")


@dataclass(frozen=True)
class LinkRules:
    blocked: frozenset[int] = frozenset()
    drop: dict[int, float] = field(default_factory=dict)
    delay_ms: dict[int, int] = field(default_factory=dict)

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
        return cls(blocked, drop, delay)

    def to_json(self) -> dict[str, Any]:
        return {"blocked": sorted(self.blocked), "drop": self.drop, "delay_ms": self.delay_ms}


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
        if delay and self._nursery is not None:
            self._nursery.start_soon(self._send_later, delay, to, data)
        else:
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
