"""`ByzantineReplica`: an honest replica whose every `Output` is rewritten by its strategies,
in order. Same `step` as `consensus.Replica`; everything else is read from the honest one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensus.auth import Authenticator
from consensus.events import ClientRequest, Event, Output, Receive, Tick
from consensus.messages import Conflict
from consensus.types import Config

from .context import ByzContext, Collusion, DetRng, Strategy
from .strategies import parse_strategy

# ---------------------------------------------------------------- the wrapper


class ByzantineReplica:
    """An honest `Replica` whose outputs are rewritten by `strategies`, in order.

    `seed` drives every choice the strategies make; `collusion` (shared by the members of a
    group) lets colluders sign for each other and lie consistently."""

    def __init__(
        self,
        inner: Any,
        strategies: Sequence[Strategy | str],
        auth: Authenticator,
        *,
        replica_id: int | None = None,
        config: Config | None = None,
        seed: int = 0,
        collusion: Collusion | None = None,
    ) -> None:
        self.inner = inner
        self.strategies = [parse_strategy(s) if isinstance(s, str) else s for s in strategies]
        rid = replica_id if replica_id is not None else getattr(inner, "replica_id", None)
        if rid is None:
            rid = getattr(inner, "id", None)
        if rid is None:
            raise ValueError("ByzantineReplica needs replica_id (inner exposes none)")
        cfg = config if config is not None else getattr(inner, "config", None)
        if cfg is None:
            raise ValueError("ByzantineReplica needs config (inner exposes none)")
        self.ctx = ByzContext(inner, int(rid), cfg, auth,
                              DetRng(f"byz/{seed}/{rid}".encode()), collusion)
        # the honest core must not convict its own group by accident (strategies decide what
        # evidence a Byzantine replica files, e.g. false-evidence)
        never = getattr(inner, "never_accuse", None)
        if isinstance(never, set):
            never.update(self.ctx.colluders())

    @property
    def replica_id(self) -> int:
        return self.ctx.replica_id

    def __getattr__(self, name: str) -> Any:
        # view, primary, last_executed, health() … come from the honest replica
        return getattr(self.inner, name)

    def step(self, event: Event) -> Output:
        ctx = self.ctx
        ctx.steps += 1
        if isinstance(event, Tick):
            ctx.now_ms = max(ctx.now_ms, event.now_ms)
        elif isinstance(event, Receive) and not isinstance(event.message, bytes | bytearray):
            ctx.received_history.append(event.message)
        elif isinstance(event, ClientRequest):
            pass
        out = self.inner.step(event)
        group = set(ctx.colluders())
        out.send = [  # nor show peers the pre-prepares that would prove its group equivocated
            s for s in out.send
            if not (isinstance(s.message, Conflict) and s.message.pre_prepare.replica in group)
        ]
        for strategy in self.strategies:
            out = strategy.rewrite(ctx, event, out)
        for s in out.send:
            if not isinstance(s.message, bytes | bytearray):
                ctx.sent_history.append(s.message)
        return out

    def __repr__(self) -> str:
        return f"ByzantineReplica({self.replica_id}, {self.strategies})"
