"""Consensus records in the ledger: `persist` writes own votes, the view, the stable checkpoint,
prepared certificates and convictions in ONE synced batch, validated first (a vote conflicting
with a persisted one is refused), and prunes votes and certificates below a checkpoint.
Imports: stdlib, consensus (messages/events), storage.{keys,kv,interface,records,ledger_core}.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus import Commit as CommitMsg
from consensus import (
    Conviction,
    NewView,
    OwnVote,
    Prepare,
    PreparedCert,
    PrePrepare,
    Prune,
    Record,
    StableCheckpoint,
    ViewChange,
    ViewState,
)

from . import keys
from .interface import StorageError
from .kv import Pending
from .ledger_core import LedgerCore, log
from .records import decode, encode


def vote_key(msg: object) -> bytes:
    """The key an own vote is stored under: its kind, view and seq (a view change: the new view)."""
    if isinstance(msg, PrePrepare):
        return keys.vote(keys.KIND_PRE_PREPARE, msg.view, msg.seq)
    if isinstance(msg, Prepare):
        return keys.vote(keys.KIND_PREPARE, msg.view, msg.seq)
    if isinstance(msg, CommitMsg):
        return keys.vote(keys.KIND_COMMIT, msg.view, msg.seq)
    if isinstance(msg, ViewChange):
        return keys.vote(keys.KIND_VIEW_CHANGE, msg.new_view, 0)
    if isinstance(msg, NewView):
        return keys.vote(keys.KIND_NEW_VIEW, msg.view, 0)
    raise StorageError(f"OwnVote holds a {type(msg).__name__}, which is not a vote")


class LedgerRecords(LedgerCore):
    """`persist` and the pruning of records (see the module docstring)."""

    def persist(self, records: Sequence[Record]) -> None:
        """Write consensus records in ONE synced batch (validate everything first)."""
        b = Pending(self._kv)
        view = self._current_view()
        for rec in records:
            if isinstance(rec, ViewState):
                if rec.view < view:
                    self._fail(
                        "persist",
                        f"{self.where}: view would go back from {view} to {rec.view}",
                    )
                view = rec.view
                b.put(keys.VIEW_KEY, encode(rec))
            elif isinstance(rec, OwnVote):
                key = vote_key(rec.message)
                data = encode(rec)
                # only a stored key is read: a Get of an absent key feeds LevelDB's seek
                # compaction (see _above_window), and nearly every vote is for a new slot
                old = b.get(key) if key in b.overlay or key in self._record_keys() else None
                if old is not None and old != data and self.strict_votes:
                    self._fail(
                        "persist",
                        f"{self.where}: refusing to persist a {type(rec.message).__name__} "
                        f"conflicting with the one persisted for {keys.parse_vote(key)}",
                    )
                if old != data:
                    b.put(key, data)
            elif isinstance(rec, StableCheckpoint):
                raw = b.get(keys.CHECKPOINT_KEY)
                old = None if raw is None else decode(StableCheckpoint, raw, keys.CHECKPOINT_KEY)
                if old is not None and old.seq > rec.seq:
                    log.warning(
                        "storage.stale_checkpoint", where=self.where, have=old.seq, got=rec.seq
                    )
                    self.errors["stale-checkpoint"] += 1
                    continue
                b.put(keys.CHECKPOINT_KEY, encode(rec))
            elif isinstance(rec, PreparedCert):
                pp = rec.proof.pre_prepare
                b.put(keys.prepared(pp.view, pp.seq), encode(rec))
            elif isinstance(rec, Conviction):
                key = keys.conviction(rec.replica)
                if b.get(key) is None:  # the first conviction stands (never pardoned)
                    b.put(key, encode(rec))
            elif isinstance(rec, Prune):
                self._prune(b, rec.upto, view)
            else:
                self._fail("persist", f"{self.where}: not a record: {type(rec).__name__}")
        if b.ops:
            try:
                self._kv.write(b.ops, sync=True)
            except BaseException:
                self._live_records = None  # unknown whether any of it landed: re-read
                self._view = None
                raise
            self._view = view
            if self._live_records is not None:
                for k, v in b.overlay.items():
                    if k.startswith((keys.VOTE, keys.PREPARED)):
                        if v is None:
                            self._live_records.discard(k)
                        else:
                            self._live_records.add(k)

    def _current_view(self) -> int:
        """The stored view (cached: the key is absent until the first view change, and a
        Get of an absent key per persist fed LevelDB's seek compaction)."""
        if self._view is None:
            raw = self._kv.get(keys.VIEW_KEY)
            self._view = 0 if raw is None else decode(ViewState, raw, keys.VIEW_KEY).view
        return self._view

    def _record_keys(self) -> set[bytes]:
        """Vote and prepared-certificate keys on disk (scanned once, then kept in step)."""
        if self._live_records is None:
            self._live_records = {
                k for p in (keys.VOTE, keys.PREPARED)
                for k, _ in self._kv.items(p, keys.prefix_end(p))
            }
        return self._live_records

    def _prune(self, b: Pending, upto: int, view: int) -> None:
        on_disk = self._record_keys()
        for key in b.keys_with_prefix(keys.VOTE, on_disk):
            kind, v, seq = keys.parse_vote(key)
            if kind in (keys.KIND_VIEW_CHANGE, keys.KIND_NEW_VIEW):
                if v < view:
                    b.delete(key)
            elif seq <= upto:
                b.delete(key)
        for key in b.keys_with_prefix(keys.PREPARED, on_disk):
            if keys.parse_prepared(key)[1] <= upto:
                b.delete(key)

