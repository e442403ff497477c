"""Commit waiters: callers waiting for a tx's commit, and the answers they get.

`Waiter` (one caller's wait), `Submitted` (a request queued for the replica task with the
waiter of its admission) and `WaitersMixin` (part of `Node`): `wait_commit`,
`submit_and_wait`, resolving waiters when a block commits (`_resolve_committed`), answering
skipped and duplicate requests from the store and failing rejected ones (`_on_reply`).
Imports: stdlib, trio, consensus, storage, bftnode.logging, bftnode.node.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio

from consensus import Duplicate, Execute, Rejected, Request, request_digest
from storage.interface import TxResult

from ..logging import trace_context
from .errors import TxRejected
from .otel import TxSpans

# A rejection reason can carry request-derived text (an op's size); the metric label is the
# reason's code from this closed set, anything else "tx:other".
_REJECTION_CODES = (
    ("not a request", "tx:not-a-request"), ("client_id", "tx:client-id"),
    ("negative", "tx:negative-field"), ("op of", "tx:too-large"),
    ("bad client signature", "tx:bad-signature"), ("request_seq too old", "tx:seq-too-old"),
    ("rate limited", "tx:rate-limited"), ("expired", "tx:expired"),
    ("already pending", "tx:already-pending"), ("pool full", "tx:pool-full"),
    ("duplicate", "tx:duplicate"), ("conflicting request", "tx:conflicting"),
    ("client quota", "tx:client-quota"),
)


def rejection_label(reason: str) -> str:
    """The metric label of a rejection reason: one of a closed set of codes."""
    for prefix, label in _REJECTION_CODES:
        if reason.startswith(prefix):
            return label
    return "tx:other"


@dataclasses.dataclass
class Waiter:
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    result: dict | None = None
    error: TxRejected | None = None

    def resolve(self, result: dict) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()

    def fail(self, error: TxRejected) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclasses.dataclass
class Submitted:
    request: Request
    accepted: Waiter
    trace_id: str | None = None  # the caller's, when it may travel to the peers (traces.py)


class WaitersMixin:
    """Commit waiters of `Node`: `_commit_waiters` (tx hash -> waiters), `_by_client`
    ((client, seq) -> tx hashes waited for) and `_traces` (tx hash -> caller's trace id)."""

    _spans: TxSpans | None = None  # OTLP export of traced txs (otel.py), when on

    def _watch(self, tx_hash: bytes, client: tuple[bytes, int] | None = None) -> Waiter:
        w = Waiter()
        self._commit_waiters[tx_hash].append(w)
        if client is not None:
            self._by_client[client].add(tx_hash)
        return w

    def _unwatch(self, tx_hash: bytes, w: Waiter) -> None:
        lst = self._commit_waiters.get(tx_hash)
        if lst is not None and w in lst:
            lst.remove(w)
            if not lst:
                del self._commit_waiters[tx_hash]

    async def wait_commit(self, tx_hash: bytes, timeout: float) -> TxResult | None:
        """The tx's result once committed (immediately if it already is); None on timeout.
        The store check and the registration happen in one trio step: no commit is missed."""
        stored = self.store.tx(tx_hash)
        if stored is not None:
            return stored
        w = self._watch(tx_hash)
        try:
            with trio.move_on_after(timeout):
                await w.done.wait()
        finally:
            self._unwatch(tx_hash, w)
        if w.result is None:
            return None
        return w.result["tx_result"]

    async def submit_and_wait(self, request: Request, timeout: float = 30.0) -> TxResult:
        """Submit and wait for the commit; raises TxRejected or trio.TooSlowError."""
        h = request_digest(request)
        w = self._watch(h, (request.client_id, request.request_seq))
        try:
            res = await self.submit(request)
            if res.status == "rejected":
                raise TxRejected(res.reason, h)
            if res.status == "committed":
                assert res.result is not None
                return res.result
            with trio.fail_after(timeout):
                await w.done.wait()
        finally:
            self._unwatch(h, w)
            self._by_client.pop((request.client_id, request.request_seq), None)
        if w.error is not None:
            raise w.error
        assert w.result is not None
        return w.result["tx_result"]

    def _resolve_committed(self, ex: Execute, results: tuple[TxResult, ...]) -> None:
        """A block is stored: its txs' waiters get their results, its skipped requests an
        answer from the store."""
        for tr in results:
            tid = self._traces.pop(tr.tx_hash, None) or self._peer_traces.pop(tr.tx_hash)
            if tid is not None:
                with trace_context(tid):
                    self.log.info("tx committed", tx=tr.tx_hash.hex()[:16], height=ex.seq,
                                  view=ex.view, code=tr.code)
                if self._spans is not None:
                    self._spans.committed(tr.tx_hash, tid, ex.seq, ex.view, tr.code)
            for w in self._commit_waiters.pop(tr.tx_hash, ()):
                w.resolve({"tx_result": tr})
            self._by_client.pop((tr.client_id, tr.request_seq), None)
        for req, reason in ex.skipped:
            self.metrics.txs_skipped.labels(reason).inc()
            self._answer_from_store(req.client_id, req.request_seq, request_digest(req), reason)

    def _answer_from_store(self, client_id: bytes, seq: int, tx_hash: bytes, reason: str) -> None:
        hashes = self._by_client.pop((client_id, seq), set()) | {tx_hash}
        stored = self.store.tx_by_client(client_id, seq)
        for h in hashes:
            for w in self._commit_waiters.pop(h, ()):
                if stored is not None:
                    w.resolve({"tx_result": stored, "duplicate": True})
                else:
                    w.fail(TxRejected(reason, h))

    def _on_reply(self, r: Any) -> None:
        if isinstance(r, Rejected):
            h = request_digest(r.request)
            self.metrics.rejected.labels(rejection_label(r.reason)).inc()
            self.log.info("tx rejected", tx=h.hex()[:16], reason=r.reason)
            self._by_client.get((r.request.client_id, r.request.request_seq), set()).discard(h)
            for w in self._commit_waiters.pop(h, ()):
                w.fail(TxRejected(r.reason, h))
        elif isinstance(r, Duplicate):
            self._answer_from_store(r.client_id, r.request_seq, b"", "duplicate")
