"""Checkpoint votes and stability.

Owns `CheckpointVotes`: Checkpoint messages for seqs above the stable checkpoint, first vote per
replica per seq, bounded to a fixed number of seqs (the oldest are dropped). 2f+1 matching
checkpoints for a seq make it stable. Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

from .events import Evidence
from .messages import Checkpoint
from .quorum import VoteSet
from .types import Config


class CheckpointVotes:
    def __init__(self, config: Config) -> None:
        self.config = config
        # enough seqs for the window plus replicas running ahead of us
        self.max_seqs = 4 * (config.watermark_window // config.checkpoint_interval) + 4
        self._votes: dict[int, VoteSet] = {}

    def add(self, cp: Checkpoint) -> Evidence | None:
        votes = self._votes.get(cp.seq)
        if votes is None:
            votes = self._votes[cp.seq] = VoteSet()
            if len(self._votes) > self.max_seqs:
                del self._votes[min(self._votes)]
                if cp.seq not in self._votes:
                    return None
        return votes.add(cp.replica, cp.state_digest, cp)

    def proof(self, seq: int) -> tuple[bytes, tuple[Checkpoint, ...]] | None:
        """(digest, 2f+1 matching checkpoints) if seq is proven stable."""
        votes = self._votes.get(seq)
        if votes is None:
            return None
        best = votes.best()
        if best is None or best[1] < self.config.quorum:
            return None
        return best[0], tuple(votes.matching(best[0])[: self.config.quorum])

    def votes(self, seq: int) -> list[Checkpoint]:
        """The checkpoints kept for `seq` (first per replica), by replica id."""
        votes = self._votes.get(seq)
        if votes is None:
            return []
        return [votes.get(r) for r in sorted(votes.voters())]

    def kept(self, cp: Checkpoint) -> Checkpoint | None:
        """The vote kept for cp's replica and seq if it has the same digest (cp repeats it)."""
        votes = self._votes.get(cp.seq)
        old = None if votes is None else votes.get(cp.replica)
        return old if old is not None and old.state_digest == cp.state_digest else None

    def highest_weak(self) -> tuple[int, list[int]] | None:
        """The highest seq that f+1 replicas vouch for with one digest, and those replicas."""
        for seq in sorted(self._votes, reverse=True):
            best = self._votes[seq].best()
            if best and best[1] >= self.config.weak_quorum:
                return seq, [c.replica for c in self._votes[seq].matching(best[0])]
        return None

    def seqs(self) -> list[int]:
        return sorted(self._votes)

    def gc(self, stable: int) -> None:
        for s in [s for s in self._votes if s <= stable]:
            del self._votes[s]
