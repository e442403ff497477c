"""The simulated network: which messages arrive, when, and how often.

Owns `Faults` (named fault knobs) and `SimNetwork`, which turns one send from replica `src`
to replica `dst` at virtual time `now` into zero, one or two delivery times. All choices come
from one seeded `random.Random`, so a seed replays exactly. Knows nothing of PBFT.
Imports: stdlib only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Partition:
    """Replicas in different groups cannot talk from `start_ms` until `heal_ms`."""

    groups: tuple[frozenset[int], ...]
    start_ms: int = 0
    heal_ms: int = 10_000

    def blocks(self, src: int, dst: int, now: int) -> bool:
        if not self.start_ms <= now < self.heal_ms:
            return False
        for g in self.groups:
            if src in g:
                return dst not in g
        return True  # a replica in no group is cut off from everyone


@dataclass(frozen=True, slots=True)
class OneWay:
    """`replica` can send but not receive (`deaf`) or receive but not send (`mute`)."""

    replica: int
    kind: str  # "deaf" | "mute"
    start_ms: int = 0
    heal_ms: int | None = None  # None: for the whole run (the replica counts as faulty)

    def active(self, now: int) -> bool:
        return self.start_ms <= now and (self.heal_ms is None or now < self.heal_ms)


@dataclass(slots=True)
class Faults:
    """Named fault knobs. Loss, duplication and reordering apply before `heal_ms` only;
    after it the network is reliable (delays stay random, so order is still not FIFO)."""

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0  # chance of an extra delay of up to `reorder_max_ms`
    delay_min_ms: int = 1
    delay_max_ms: int = 20
    reorder_max_ms: int = 300
    heal_ms: int = 0
    partitions: list[Partition] = field(default_factory=list)
    one_way: list[OneWay] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("loss", "dup", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault knob {name}={p} must be a probability in [0, 1]")
        if not 0 <= self.delay_min_ms <= self.delay_max_ms:
            raise ValueError("need 0 <= delay_min_ms <= delay_max_ms")

    def last_heal_ms(self) -> int:
        """When every temporary fault is over."""
        ends = [self.heal_ms] + [p.heal_ms for p in self.partitions]
        ends += [w.heal_ms for w in self.one_way if w.heal_ms is not None]
        return max(ends)

    def permanently_faulty(self) -> set[int]:
        return {w.replica for w in self.one_way if w.heal_ms is None}

    def describe(self) -> dict:
        return {
            "loss": self.loss,
            "dup": self.dup,
            "reorder": self.reorder,
            "delay_ms": [self.delay_min_ms, self.delay_max_ms],
            "heal_ms": self.heal_ms,
            "partitions": [
                {"groups": [sorted(g) for g in p.groups], "start_ms": p.start_ms,
                 "heal_ms": p.heal_ms}
                for p in self.partitions
            ],
            "one_way": [
                {"replica": w.replica, "kind": w.kind, "start_ms": w.start_ms,
                 "heal_ms": w.heal_ms}
                for w in self.one_way
            ],
        }


class SimNetwork:
    """Decides the fate of each message. Counts what it dropped and why."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self.sent = 0
        self.dropped: dict[str, int] = {}

    def _drop(self, reason: str) -> list[int]:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return []

    def route(self, src: int, dst: int, now: int) -> list[int]:
        """Delivery times (possibly none, possibly two) for one message src -> dst."""
        f = self.faults
        self.sent += 1
        for w in f.one_way:
            if w.active(now) and (
                (w.kind == "mute" and w.replica == src) or (w.kind == "deaf" and w.replica == dst)
            ):
                return self._drop(w.kind)
        for p in f.partitions:
            if p.blocks(src, dst, now):
                return self._drop("partition")
        faulty = now < f.heal_ms
        rng = self.rng
        if faulty and f.loss and rng.random() < f.loss:
            return self._drop("loss")
        copies = 2 if faulty and f.dup and rng.random() < f.dup else 1
        times = []
        for _ in range(copies):
            delay = rng.randint(f.delay_min_ms, f.delay_max_ms)
            if faulty and f.reorder and rng.random() < f.reorder:
                delay += rng.randint(0, f.reorder_max_ms)
            times.append(now + delay)
        return times
