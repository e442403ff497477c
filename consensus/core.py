"""`ReplicaCore`: what a node shell needs of a replica - the honest `Replica`, or a
`ByzantineReplica` around one (which forwards these to it). Tests may script their own."""

from __future__ import annotations

from typing import Protocol

from .events import Event, Output
from .messages import Request
from .normal import ClientTable


class ReplicaCore(Protocol):
    def step(self, event: Event) -> Output:
        """Events in, actions out (the sans-I/O core)."""
        ...

    @property
    def view(self) -> int: ...

    @property
    def in_view_change(self) -> bool: ...

    @property
    def stable_seq(self) -> int: ...

    @property
    def client_table(self) -> ClientTable | None: ...

    @property
    def convicted(self) -> dict[int, tuple[int, str]]:
        """Replicas convicted by committed evidence: replica -> (block height, kind)."""
        ...

    def quota_refusal(self, req: Request, ahead: int = 0, own: int = 0) -> str | None:
        """Why `req` would be refused for its client's pending quota now, or None; `ahead`
        requests of one call before it (`own` of them its client's) would enter first."""
        ...

    def health(self) -> dict:
        """Why the replica is (not) making progress: diagnostics for status pages."""
        ...
