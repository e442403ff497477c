"""The message log: agreement state per (view, seq) inside the watermark window.

Owns `Slot` (the accepted pre-prepare and the prepare/commit votes of one view and seq) and
`MessageLog` (slots between the low and high watermark, garbage-collected at each stable
checkpoint). Memory is bounded: slots only exist for seqs in (low, high] and at most n votes
per slot. Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import PreparedProof, PrePrepare
from .quorum import VoteSet
from .types import Config


@dataclass(slots=True)
class Slot:
    view: int
    seq: int
    pre_prepare: PrePrepare | None = None
    prepares: VoteSet = field(default_factory=VoteSet)
    commits: VoteSet = field(default_factory=VoteSet)
    prepared: bool = False
    committed: bool = False
    since_ms: int = 0  # when the pre-prepare was accepted (for retransmission)
    resends: int = 0  # retransmission rounds so far (each waits twice as long, capped)
    next_resend_ms: int = 0

    def prepare_count(self, config: Config) -> int:
        """Matching prepares from backups (the primary's pre-prepare is its prepare)."""
        if self.pre_prepare is None:
            return 0
        return self.prepares.count(self.pre_prepare.digest, exclude=config.primary(self.view))

    def commit_count(self) -> int:
        if self.pre_prepare is None:
            return 0
        return self.commits.count(self.pre_prepare.digest)

    def proof(self, config: Config) -> PreparedProof:
        assert self.pre_prepare is not None
        prepares = self.prepares.matching(
            self.pre_prepare.digest, exclude=config.primary(self.view)
        )[: config.quorum - 1]
        return PreparedProof(self.pre_prepare, tuple(prepares))


class MessageLog:
    """Slots for seqs in (low, low + window]; `gc(stable)` moves the window forward."""

    def __init__(self, config: Config, low: int = 0) -> None:
        self.config = config
        self.low = low
        self._slots: dict[tuple[int, int], Slot] = {}

    @property
    def high(self) -> int:
        return self.low + self.config.watermark_window

    def in_window(self, seq: int) -> bool:
        return self.low < seq <= self.high

    def slot(self, view: int, seq: int) -> Slot:
        assert self.in_window(seq), (seq, self.low, self.high)
        key = (view, seq)
        s = self._slots.get(key)
        if s is None:
            s = self._slots[key] = Slot(view, seq)
        return s

    def get(self, view: int, seq: int) -> Slot | None:
        return self._slots.get((view, seq))

    def slots(self) -> list[Slot]:
        return [self._slots[k] for k in sorted(self._slots)]

    def gc(self, stable: int) -> None:
        """Drop everything at or below the stable checkpoint."""
        if stable <= self.low:
            return
        self.low = stable
        for key in [k for k in self._slots if k[1] <= stable]:
            del self._slots[key]

    def drop_views_below(self, view: int) -> None:
        for key in [k for k in self._slots if k[0] < view]:
            del self._slots[key]

    def __len__(self) -> int:
        return len(self._slots)
