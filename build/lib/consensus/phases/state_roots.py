"""State roots: our StateVote per executed block, peers' StateVotes, state certificates.

With `Config.state_votes` on, the shell steps `Executed(seq, block_hash, state_root,
results_root)` once the block is stored; we sign those roots as a StateVote, broadcast it and
count it. Peers' votes are counted by the pure `state_votes.StateVotes` (first per replica per
seq, bounded per replica, within a horizon). 2f+1 equal votes make a `StateCertified` action
(the shell stores the certificate); a quorum certifying other roots than ours for a seq is a
`StateDivergence` alarm (our state is wrong: a bug or a bad disk). Votes are never evidence of
a fault by themselves: a replica whose roots differ from the quorum's is only outvoted.

Lost votes are repaired, so a height does not stay uncertified at one replica: on each status
timeout a replica resends its own vote for executed seqs still uncertified here (at most
STATE_VOTE_RESEND_MAX, each at most once a status interval). A peer that already certified
that seq and hears the same vote from that replica again answers it with its own vote (once
per status interval per replica and seq): the votes the resender lacks. Both tables are
bounded by `max_seqs` per replica.
"""

from __future__ import annotations

from ..errors import LocalProtocolError
from ..events import Executed, StateCertified, StateDivergence
from ..messages import StateVote
from ..state_votes import Roots, StateVotes, roots_of, split_roots
from .state import ReplicaState

STATE_VOTE_RESEND_MAX = 16  # own uncertified votes resent per status timeout


class StateRootsMixin(ReplicaState):
    """StateVote handling (docs/protocol.md "State roots and certificates")."""

    _state_votes: StateVotes
    _own_roots: dict[int, Roots]  # our roots of the last max_seqs executed seqs
    _own_votes: dict[int, tuple[StateVote, int]]  # our signed votes sent, and when last sent
    _late_heard: dict[int, dict[int, int]]  # replica -> seq -> when it last sent a late vote

    def _on_executed(self, ev: Executed) -> None:
        if not self.config.state_votes:
            return
        if not 0 < ev.seq <= self._last_executed:
            raise LocalProtocolError(
                f"Executed({ev.seq}) for a block not executed (last {self._last_executed})")
        vote = StateVote(ev.seq, ev.block_hash, ev.state_root, ev.results_root, self.id)
        value = roots_of(vote)
        self._own_roots[ev.seq] = value
        while len(self._own_roots) > self._state_votes.max_seqs:
            del self._own_roots[min(self._own_roots)]
        certified = self._state_votes.certified(ev.seq)
        if certified is not None:  # the others certified it before we got here
            if certified != value:
                self._diverged(ev.seq, value, certified)
            return
        if self._state_votes.unwanted(ev.seq, self._last_executed) == "state-vote-old":
            return  # catching up far below what is certified: the peers drop it too
        vote = self.auth.sign(vote)
        self._own_votes[ev.seq] = (vote, self._now)
        while len(self._own_votes) > self._state_votes.max_seqs:
            del self._own_votes[min(self._own_votes)]
        self._broadcast(vote)
        self._count_state_vote(vote)

    def _resend_state_votes(self) -> None:
        """On a status timeout: our votes for seqs not certified here, sent at least a status
        interval ago, go out again (oldest first, at most STATE_VOTE_RESEND_MAX)."""
        if not self.config.state_votes:
            return
        sent = 0
        for seq in sorted(self._own_votes):
            if sent >= STATE_VOTE_RESEND_MAX:
                break
            vote, at = self._own_votes[seq]
            if (self._state_votes.certified(seq) is not None
                    or seq <= self._state_votes.certified_height - self._state_votes.max_seqs
                    or self._now - at < self.config.status_interval_ms):
                continue
            self._own_votes[seq] = (vote, self._now)
            self._broadcast(vote)
            sent += 1

    def _answer_late_vote(self, vote: StateVote) -> None:
        """`vote.replica` sent a vote for a seq we certified: the usual fate of the votes after
        the 2f+1-th. The second such vote from it for that seq is a resend: it lacks the
        certificate, so it gets our own vote (once a status interval)."""
        heard = self._late_heard.setdefault(vote.replica, {})
        at = heard.get(vote.seq)
        if at is None:
            heard[vote.seq] = self._now - self.config.status_interval_ms  # answer a resend
            while len(heard) > self._state_votes.max_seqs:
                del heard[min(heard)]
            return
        ours = self._own_votes.get(vote.seq)
        if ours is None or self._now - at < self.config.status_interval_ms:
            return
        heard[vote.seq] = self._now
        self._send(vote.replica, ours[0])

    def _state_vote_wanted(self, vote: StateVote) -> bool:
        """Checks before the signature is verified: a vote we would not count costs nothing."""
        if not self.config.state_votes:
            self.dropped["state-votes-off"] += 1
            return False
        why = self._state_votes.unwanted(vote.seq, self._last_executed)
        if why is None and vote.seq < 1:
            why = "state-vote-seq-0"
        if why is None and self._state_votes.repeats(vote):
            why = "state-vote-repeat"
        if why is not None:
            self.dropped[why] += 1
            if why == "state-vote-late":
                self._answer_late_vote(vote)
            return False
        return True

    def on_state_vote(self, sender: int, vote: StateVote) -> None:
        self._count_state_vote(vote)

    def _count_state_vote(self, vote: StateVote) -> None:
        ev = self._state_votes.add(vote)
        if ev is not None:
            self._evidence("state-vote-conflict", vote.replica,
                           f"two StateVotes with different roots for block {vote.seq}",
                           *ev.messages)
            return
        found = self._state_votes.certificate(vote.seq)
        if found is None:
            return
        value, votes = found
        self._state_votes.certify(vote.seq, value)
        self._out.certified.append(StateCertified(vote.seq, votes))
        ours = self._own_roots.get(vote.seq)
        if ours is not None and ours != value:
            self._diverged(vote.seq, ours, value)

    def _diverged(self, seq: int, ours: Roots, certified: Roots) -> None:
        self._out.divergence.append(
            StateDivergence(seq, split_roots(ours), split_roots(certified)))

    @property
    def certified_height(self) -> int:
        """The highest block whose roots 2f+1 replicas certified (as seen here; 0: none)."""
        return self._state_votes.certified_height
