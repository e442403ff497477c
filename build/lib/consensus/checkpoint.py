"""Checkpoint votes and stability.

Owns `CheckpointVotes`: Checkpoint messages for seqs above the stable checkpoint, first vote per
replica per seq. Bounded per replica, never across replicas: each replica holds votes for at most
`max_seqs` seqs inside the horizon (its own oldest vote makes room for its newest), so a faulty
replica's votes for far seqs can never push out an honest replica's vote. 2f+1 matching
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
        # how far past max(stable, executed) a vote may be: replicas ahead of us by up to
        # this much are heard; further ones are caught up with through STATUS and fetch
        self.horizon = self.max_seqs * config.checkpoint_interval
        self._votes: dict[int, VoteSet] = {}
        self._seqs_of: dict[int, list[int]] = {}  # replica -> seqs it has a vote at (sorted)

    def beyond_horizon(self, seq: int, base: int) -> bool:
        return seq > base + self.horizon

    def add(self, cp: Checkpoint) -> Evidence | None:
        """Keep the first vote of cp.replica for cp.seq (the caller checked the horizon)."""
        votes = self._votes.get(cp.seq)
        if votes is None:
            votes = self._votes[cp.seq] = VoteSet()
        if votes.get(cp.replica) is None:
            mine = self._seqs_of.setdefault(cp.replica, [])
            mine.append(cp.seq)
            mine.sort()
            if len(mine) > self.max_seqs:
                self._drop(cp.replica, mine.pop(0))  # its own oldest vote, nobody else's
                if cp.seq not in self._votes:
                    return None
        return votes.add(cp.replica, cp.state_digest, cp)

    def _drop(self, replica: int, seq: int) -> None:
        votes = self._votes[seq]
        votes.discard(replica)
        if not len(votes):
            del self._votes[seq]

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
        for r, mine in self._seqs_of.items():
            self._seqs_of[r] = [s for s in mine if s > stable]

    def __len__(self) -> int:
        """Votes held (at most n * max_seqs)."""
        return sum(len(v) for v in self._votes.values())
