"""Vote collection for one slot: the first vote per replica wins.

Owns `VoteSet`: at most one vote per replica for a slot (so memory is bounded by n per slot);
a second, conflicting vote from the same replica is returned as equivocation evidence instead
of being counted. Imports only the standard library and consensus.events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .events import Evidence


class VoteSet:
    """Votes of distinct replicas for one slot, each with the value it vouches for."""

    __slots__ = ("_votes", "_values")

    def __init__(self) -> None:
        self._votes: dict[int, Any] = {}
        self._values: dict[int, bytes] = {}

    def add(self, replica: int, value: bytes, msg: Any) -> Evidence | None:
        """Record `msg` (voting for `value`) unless `replica` already voted.

        Returns Evidence("equivocation") if the earlier vote was for a different value;
        a repeat of the same vote is silently ignored.
        """
        old = self._values.get(replica)
        if old is None:
            self._votes[replica] = msg
            self._values[replica] = value
            return None
        if old != value:
            return Evidence(
                "equivocation",
                replica,
                "two different signed votes for one slot",
                (self._votes[replica], msg),
            )
        return None

    def discard(self, replica: int) -> None:
        """Forget `replica`'s vote (its table quota made room for a newer one)."""
        self._votes.pop(replica, None)
        self._values.pop(replica, None)

    def count(self, value: bytes, exclude: int | None = None) -> int:
        return sum(1 for r, v in self._values.items() if v == value and r != exclude)

    def matching(self, value: bytes, exclude: int | None = None) -> list[Any]:
        """The votes for `value`, ordered by replica id (deterministic certificates)."""
        return [
            self._votes[r]
            for r in sorted(self._values)
            if self._values[r] == value and r != exclude
        ]

    def voters(self) -> Iterator[int]:
        return iter(self._values)

    def get(self, replica: int) -> Any | None:
        return self._votes.get(replica)

    def best(self) -> tuple[bytes, int] | None:
        """The value with the most votes (ties broken by smallest value) and its count."""
        tally: dict[bytes, int] = {}
        for v in self._values.values():
            tally[v] = tally.get(v, 0) + 1
        if not tally:
            return None
        value = min(tally, key=lambda v: (-tally[v], v))
        return value, tally[value]

    def __len__(self) -> int:
        return len(self._values)
