"""What one simulated replica made durable and executed, as the checkers keep it, and the
reference model of its recovery.

Owns `SimRecords` (applies `Output.persist` in order, exactly what a node's store would keep:
view, own votes, prepared certificates, stable checkpoint, convictions; `has_vote` for the
durable-before-send check), `SimBlocks` (executed blocks with their commit certificates and
each client's executed seqs) and `recovered_state` (the RecoveredState those imply: the
reference `storage.MemoryStore.recover()` is checked against, tests/storage/test_storage_sim.py).
The replica's disk itself is a MemoryStore (testnet/sim/cluster.py). Imports: stdlib, consensus.
"""

from __future__ import annotations

from consensus import (
    Commit,
    Conviction,
    Execute,
    NewView,
    OwnVote,
    Prepare,
    PreparedProof,
    PrePrepare,
    Prune,
    RecoveredState,
    StableCheckpoint,
    ViewChange,
    ViewState,
)
from consensus.codec import GENESIS_CHAIN_DIGEST, signing_bytes


class SimRecords:
    """The records a replica persisted, compacted the way a real store compacts them."""

    def __init__(self) -> None:
        self.view = 0
        self.in_view_change = False
        self.stable: StableCheckpoint | None = None
        self._votes: dict[bytes, object] = {}  # signing bytes -> vote (dedup)
        self._ever: set[bytes] = set()  # every vote ever made durable (pruning included)
        self.applied = 0
        self.prepared: dict[tuple[int, int], PreparedProof] = {}  # (view, seq) -> certificate
        self.convicted: dict[int, Conviction] = {}  # first conviction per replica

    def apply(self, records) -> None:
        for rec in records:
            self.applied += 1
            if isinstance(rec, ViewState):
                self.view, self.in_view_change = rec.view, rec.in_view_change
            elif isinstance(rec, OwnVote):
                key = signing_bytes(rec.message)
                self._votes.setdefault(key, rec.message)
                self._ever.add(key)
            elif isinstance(rec, StableCheckpoint):
                if self.stable is None or rec.seq >= self.stable.seq:
                    self.stable = rec
            elif isinstance(rec, Prune):
                self._votes = {
                    k: v for k, v in self._votes.items()
                    if not isinstance(v, PrePrepare | Prepare | Commit) or v.seq > rec.upto
                }
                self.prepared = {k: p for k, p in self.prepared.items() if k[1] > rec.upto}
            elif type(rec).__name__ == "PreparedCert":  # by name: older consensus lacks it
                pp = rec.proof.pre_prepare
                self.prepared[(pp.view, pp.seq)] = rec.proof
            elif isinstance(rec, Conviction):
                self.convicted.setdefault(rec.replica, rec)
            else:
                raise TypeError(
                    f"simulator store does not know record {type(rec).__name__}: "
                    "teach testnet/sim/stores.py (SimRecords.apply, recovered_state)"
                )

    def has_vote(self, msg) -> bool:
        """Was this exact vote made durable at some point (before a later prune)?"""
        return signing_bytes(msg) in self._ever

    def own_votes(self) -> tuple:
        keep = []
        for v in self._votes.values():
            if isinstance(v, ViewChange) and v.new_view < self.view:
                continue
            if isinstance(v, NewView) and v.view < self.view:
                continue
            keep.append(v)
        return tuple(keep)


class SimBlocks:
    """Executed blocks in height order, with what `RecoveredState` needs."""

    def __init__(self, dedup_window: int) -> None:
        self.blocks: dict[int, Execute] = {}
        self.last = 0
        self.last_hash = GENESIS_CHAIN_DIGEST
        self.last_time_ms = 0
        self.dedup_window = dedup_window
        self.client_executed: dict[bytes, list[int]] = {}

    def append(self, ex: Execute) -> None:
        self.blocks[ex.seq] = ex
        self.last = max(self.last, ex.seq)
        if ex.seq == self.last:
            self.last_hash = ex.block_hash
            self.last_time_ms = ex.time_ms
        for r in ex.requests:
            self.client_executed.setdefault(r.client_id, []).append(r.request_seq)

    def _window(self, client: bytes) -> tuple[int, ...]:
        seqs = self.client_executed.get(client)
        if not seqs:
            return ()
        top = max(seqs)
        return tuple(sorted(s for s in set(seqs) if s > top - self.dedup_window))


def recovered_state(
    records: SimRecords, blocks: SimBlocks, max_clients: int | None = None
) -> RecoveredState:
    """What a restarted replica gets from its store: records plus the executed chain (the
    dedup windows of at most `max_clients` clients, as storage.recover restores them)."""
    cids = list(blocks.client_executed)
    executed = {cid: blocks._window(cid) for cid in cids[:max_clients]}
    extra = {}
    if "prepared" in RecoveredState.__dataclass_fields__:  # persisted prepared certificates
        extra["prepared"] = tuple(records.prepared[k] for k in sorted(records.prepared))
    return RecoveredState(
        view=records.view,
        in_view_change=records.in_view_change,
        own_votes=records.own_votes(),
        stable_checkpoint=records.stable,
        last_executed=blocks.last,
        last_block_hash=blocks.last_hash,
        last_time_ms=blocks.last_time_ms,
        client_executed=executed,
        clients_complete=len(executed) == len(cids),
        convicted=tuple(sorted(records.convicted.values(), key=lambda c: (c.seq, c.replica))),
        **extra,
    )
