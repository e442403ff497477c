"""Checkpoints: CHECKPOINT messages, the stable checkpoint and garbage collection.

Votes are counted by the pure `checkpoint.CheckpointVotes`; here they are judged against our own
block hashes (`_judge_checkpoint`) and a 2f+1 proof makes a checkpoint stable (`_check_stable`,
`_advance_stable`: the low watermark moves and the log, bodies and own votes below it are
dropped).
"""

from __future__ import annotations

from ..certificates import DIGEST_LEN
from ..errors import InvariantViolation
from ..events import Prune, StableCheckpoint
from ..messages import Checkpoint
from .state import ReplicaState

# executed batch digests kept below the stable checkpoint (~100 KB): a late BlockSync answer
# (a catch-up re-asks another peer, races ahead and checkpoints; the slow peer's answer lands
# a second later, hundreds of blocks behind) is still compared, so a forger is blamed
LATE_SYNC_KEEP = 1024


class CheckpointsMixin(ReplicaState):
    """CHECKPOINT handling and the stable checkpoint."""

    def on_checkpoint(self, sender: int, cp: Checkpoint) -> None:
        if (
            len(cp.state_digest) != DIGEST_LEN
            or cp.seq <= 0
            or cp.seq % self.config.checkpoint_interval != 0
        ):
            self._evidence("invalid-message", sender, "malformed checkpoint", cp)
            return
        if self._checkpoints.kept(cp) is None:  # a repeat was judged when it first came
            self._judge_checkpoint(sender, cp)
        if cp.seq <= self._stable_seq:
            return
        if self._checkpoints.beyond_horizon(cp.seq, max(self._stable_seq, self._last_executed)):
            self.dropped["checkpoint-beyond-horizon"] += 1
            return
        ev = self._checkpoints.add(cp)  # a bad one still counts: if 2f+1 agree, we are wrong
        if ev:
            self._add_evidence(ev)
            return
        self._check_stable(cp.seq)

    def _checkpoint_hash(self, seq: int) -> bytes | None:
        """Our block hash at checkpoint `seq` if we know it (executed, or proven stable)."""
        if seq == self._stable_seq and seq > 0:
            return self._stable_digest
        return self._own_checkpoints.get(seq)

    def _judge_checkpoint(self, sender: int, cp: Checkpoint) -> None:
        """A checkpoint whose digest differs from our block hash (or the proven stable digest)
        at its seq is evidence against its signer."""
        ours = self._checkpoint_hash(cp.seq)
        if ours is None or ours == cp.state_digest:
            return
        what = "the stable checkpoint" if cp.seq == self._stable_seq else "our block hash"
        self._evidence(
            "bad-checkpoint", sender,
            f"checkpoint {cp.seq} digest {cp.state_digest.hex()[:16]} differs from {what} "
            f"{ours.hex()[:16]}",
            cp,
        )

    def _remember_checkpoint_hash(self, seq: int, h: bytes) -> None:
        self._own_checkpoints[seq] = h
        while len(self._own_checkpoints) > self._checkpoints.max_seqs:
            del self._own_checkpoints[min(self._own_checkpoints)]

    def _check_stable(self, seq: int) -> None:
        if seq <= self._stable_seq:
            return
        found = self._checkpoints.proof(seq)
        if found is None:
            return
        digest, proof = found
        own = self._own_checkpoints.get(seq)
        if own is not None and own != digest:
            raise InvariantViolation(
                f"2f+1 replicas certify a different block hash at checkpoint {seq}"
            )
        if seq <= self._last_executed and own is None:
            return  # executed by sync below a checkpoint we did not sign: wait for the next
        self._advance_stable(seq, digest, proof)

    def _advance_stable(self, seq: int, digest: bytes, proof: tuple[Checkpoint, ...]) -> None:
        """Make `seq` the stable checkpoint (proof already verified) and collect garbage."""
        assert seq > self._stable_seq
        self._stable_seq, self._stable_digest, self._stable_proof = seq, digest, proof
        self._out.persist.append(StableCheckpoint(seq, digest, proof))
        self._out.persist.append(Prune(seq))
        self._log.gc(seq)
        self._checkpoints.gc(seq)
        self._bodies.gc(seq)
        keep_from = seq - self.config.watermark_window  # judge late checkpoints a window back
        for s in [s for s in self._own_checkpoints if s < keep_from]:
            del self._own_checkpoints[s]
        for s in [s for s in self._prepared if s <= seq]:
            del self._prepared[s]
        for s in [s for s in self._executed_digests if s <= seq - LATE_SYNC_KEEP]:
            del self._executed_digests[s]
        for k in [k for k in self._own if len(k) == 3 and k[2] <= seq]:
            del self._own[k]
        self._revealed = {k for k in self._revealed if k[1] > seq}
        if self._next_seq <= seq:
            self._next_seq = seq + 1
        self._replay_buffer()
