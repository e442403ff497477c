"""What every Byzantine strategy builds on: `DetRng` (deterministic choices), `Collusion` (what
a colluding group shares), `ByzContext` (what a strategy may look at), the `Strategy` base
class and `_Periodic`, the base of strategies that act once every `every_ms`.

Everything is deterministic: the only "randomness" is `DetRng`, a hash counter seeded by the
caller. No I/O, no clock (time comes from `Tick` events).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus.auth import Authenticator
from consensus.events import Event, Output, Send, Tick
from consensus.messages import PrePrepare
from consensus.types import Config

# ---------------------------------------------------------------- deterministic choices


class DetRng:
    """A deterministic pseudo-random stream (BLAKE2b in counter mode). Not for secrets."""

    def __init__(self, seed: int | bytes) -> None:
        self._seed = seed if isinstance(seed, bytes) else str(seed).encode()
        self._counter = 0

    def bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.blake2b(
                self._counter.to_bytes(8, "big"), key=self._seed[:64], digest_size=64
            ).digest()
        return out[:n]

    def random(self) -> float:
        return int.from_bytes(self.bytes(7), "big") / float(1 << 56)

    def randrange(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randrange of an empty range")
        return int.from_bytes(self.bytes(8), "big") % n

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.random() < p


# ---------------------------------------------------------------- shared collusion state


@dataclass
class Collusion:
    """What a group of colluding replicas share: their keys and the lies they agreed on.

    `alternatives` maps (view, seq, honest digest) to the conflicting pre-prepare the group's
    primary showed the other half of the honest replicas, so colluding backups vote for it too.
    """

    members: dict[int, Authenticator]
    seed: int = 0
    alternatives: dict[tuple[int, int, bytes], PrePrepare] = field(default_factory=dict)

    def is_member(self, rid: int) -> bool:
        return rid in self.members


# ---------------------------------------------------------------- context and base class


class ByzContext:
    """What a strategy may look at: the wrapped replica, identity, keys, time and history."""

    def __init__(
        self,
        inner: Any,
        replica_id: int,
        config: Config,
        auth: Authenticator,
        rng: DetRng,
        collusion: Collusion | None,
    ) -> None:
        self.inner = inner
        self.replica_id = replica_id
        self.config = config
        self.auth = auth
        self.rng = rng
        self.collusion = collusion
        self.now_ms = 0
        self.steps = 0
        self.sent_history: deque[Any] = deque(maxlen=256)
        self.received_history: deque[Any] = deque(maxlen=256)

    @property
    def n(self) -> int:
        return self.config.n

    @property
    def f(self) -> int:
        return self.config.f

    @property
    def view(self) -> int:
        return int(getattr(self.inner, "view", 0))

    def is_primary(self, view: int | None = None) -> bool:
        return self.config.primary(self.view if view is None else view) == self.replica_id

    def others(self) -> list[int]:
        return [j for j in range(self.n) if j != self.replica_id]

    def colluders(self) -> list[int]:
        if self.collusion is None:
            return [self.replica_id]
        return sorted(self.collusion.members)

    def honest_halves(self, salt: int) -> tuple[list[int], list[int]]:
        """Split the non-colluding replicas in two (deterministically, varying with `salt`)."""
        victims = [j for j in self.others() if j not in self.colluders()]
        rot = salt % max(1, len(victims))
        victims = victims[rot:] + victims[:rot]
        half = (len(victims) + 1) // 2
        return victims[:half], victims[half:]

    def honest_groups(self, salt: int, size: int) -> list[list[int]]:
        """Split the non-colluding replicas into groups of at most `size`."""
        first, second = self.honest_halves(salt)
        victims = first + second
        return [victims[i: i + size] for i in range(0, len(victims), size)]

    def sign(self, msg: Any) -> Any:
        return self.auth.sign(msg)

    def sign_as(self, rid: int, msg: Any) -> Any:
        """Sign as `rid` if the group holds its key, else sign with our own (invalid) key."""
        msg = msgspec.structs.replace(msg, replica=rid)
        if self.collusion is not None and rid in self.collusion.members:
            return self.collusion.members[rid].sign(msg)
        return self.auth.sign(msg)


def _targets(ctx: ByzContext, send: Send) -> list[int]:
    return ctx.others() if send.to is None else [send.to]


class Strategy:
    """Rewrites one step's Output. Subclasses override `rewrite`; `name` is the CLI name."""

    name = "honest"

    def rewrite(self, ctx: ByzContext, event: Event, out: Output) -> Output:
        return out

    def __repr__(self) -> str:
        return self.name



class _Periodic(Strategy):
    """Acts on at most one Tick every `every_ms` (`NAME:P:MS` on the command line; default
    `EVERY_MS`), and asks the shell for Ticks that often."""

    EVERY_MS = 500
    _next_ms = 0

    def __init__(self, every_ms: int | None = None) -> None:
        self.every_ms = self.EVERY_MS if every_ms is None else every_ms
        if self.every_ms < 1:
            raise ValueError(f"{self.name}: the period needs MS >= 1")

    def _spec(self, param: Any) -> str:
        """The command-line spec of this instance (the period only if not the default)."""
        every = "" if self.every_ms == self.EVERY_MS else f":{self.every_ms}"
        return f"{self.name}:{param}{every}"

    def due(self, ctx: ByzContext, event: Event, out: Output) -> bool:
        fire = isinstance(event, Tick) and ctx.now_ms >= self._next_ms
        if fire:
            self._next_ms = ctx.now_ms + self.every_ms
        if out.next_deadline_ms is None or self._next_ms < out.next_deadline_ms:
            out.next_deadline_ms = self._next_ms
        return fire

