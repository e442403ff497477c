"""State votes: the table of StateVote messages and state certificates.

Owns `StateVotes`: each replica's StateVote (its post-execution roots of a block) for seqs not
yet certified, first vote per replica per seq. Bounded per replica, never across replicas (as
`checkpoint.CheckpointVotes`): each replica holds votes for at most `max_seqs` seqs (its own
oldest vote makes room for its newest), votes are taken only up to `horizon` seqs above the
caller's base (max of executed and certified height) and not below `certified_height -
max_seqs`. 2f+1 votes with equal (block_hash, state_root, results_root) certify a seq: the
caller takes the certificate (`certificate`) and marks it (`certify`), which drops the seq's
votes. Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

import bisect

from .events import Evidence
from .messages import StateVote
from .quorum import VoteSet
from .types import Config

Roots = bytes  # block_hash + state_root + results_root (96 bytes): what a vote vouches for


def roots_of(vote: StateVote) -> Roots:
    return vote.block_hash + vote.state_root + vote.results_root


def split_roots(value: Roots) -> tuple[bytes, bytes, bytes]:
    return value[:32], value[32:64], value[64:96]


class StateVotes:
    def __init__(self, config: Config) -> None:
        self.quorum = config.quorum
        # a few windows of blocks: replicas executing up to a window apart are all heard
        self.max_seqs = 2 * config.watermark_window + 8
        self.horizon = self.max_seqs
        self.certified_height = 0
        self._certified: dict[int, Roots] = {}  # the last max_seqs certified seqs
        self._votes: dict[int, VoteSet] = {}
        self._seqs_of: dict[int, list[int]] = {}  # replica -> seqs it has a vote at (sorted)

    def unwanted(self, seq: int, base: int) -> str | None:
        """Why a vote for `seq` is not taken (a `dropped` reason), or None if it is."""
        if seq in self._certified:
            return "state-vote-late"  # the usual fate of the votes after the 2f+1-th
        if seq <= self.certified_height - self.max_seqs:
            return "state-vote-old"
        if seq > max(base, self.certified_height) + self.horizon:
            return "state-vote-beyond-horizon"
        return None

    def repeats(self, vote: StateVote) -> bool:
        """True if `vote` repeats the kept vote of its replica for its seq."""
        votes = self._votes.get(vote.seq)
        old = None if votes is None else votes.get(vote.replica)
        return old is not None and old == vote

    def add(self, vote: StateVote) -> Evidence | None:
        """Keep the first vote of vote.replica for vote.seq (the caller checked `unwanted`).
        A second vote with other roots is returned as evidence (not counted)."""
        votes = self._votes.get(vote.seq)
        if votes is None:
            votes = self._votes[vote.seq] = VoteSet()
        if votes.get(vote.replica) is None:
            mine = self._seqs_of.setdefault(vote.replica, [])
            bisect.insort(mine, vote.seq)
            if len(mine) > self.max_seqs:
                self._drop(vote.replica, mine.pop(0))  # its own oldest vote, nobody else's
                if vote.seq not in self._votes:
                    return None
        return votes.add(vote.replica, roots_of(vote), vote)

    def _drop(self, replica: int, seq: int) -> None:
        votes = self._votes[seq]
        votes.discard(replica)
        if not len(votes):
            del self._votes[seq]

    def certificate(self, seq: int) -> tuple[Roots, tuple[StateVote, ...]] | None:
        """(roots, exactly 2f+1 matching votes sorted by replica) once a quorum agrees."""
        votes = self._votes.get(seq)
        if votes is None or len(votes) < self.quorum:
            return None
        best = votes.best()
        if best is None or best[1] < self.quorum:
            return None
        return best[0], tuple(votes.matching(best[0])[: self.quorum])

    def certify(self, seq: int, value: Roots) -> None:
        """Mark `seq` certified with `value`: its votes go, later ones are dropped."""
        votes = self._votes.pop(seq, None)
        if votes is not None:
            for r in votes.voters():
                mine = self._seqs_of[r]
                i = bisect.bisect_left(mine, seq)
                if i < len(mine) and mine[i] == seq:
                    del mine[i]
        self._certified[seq] = value
        self.certified_height = max(self.certified_height, seq)
        floor = self.certified_height - self.max_seqs
        for s in [s for s in self._certified if s <= floor]:
            del self._certified[s]
        for s in [s for s in self._votes if s <= floor]:
            for r in self._votes.pop(s).voters():
                self._seqs_of[r].remove(s)

    def certified(self, seq: int) -> Roots | None:
        """The certified roots of `seq` (one of the last max_seqs certified), if any."""
        return self._certified.get(seq)

    def __len__(self) -> int:
        """Votes held (at most n * max_seqs)."""
        return sum(len(v) for v in self._votes.values())
