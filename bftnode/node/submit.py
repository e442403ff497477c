"""Admission: what `submit` decides before the replica task (already committed? a malformed
op?), the hand-off of a request (or a batch) to the replica task's inbox, and the answer the
caller gets once the group it joined is stepped. `SubmitMixin` is part of `Node`.
Imports: stdlib, trio, consensus, network.framing, bftnode.logging, bftnode.rpc.node_api,
bftnode.node.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from consensus import Request, request_digest, sign_request
from network.framing import FramingError

from ..logging import current_trace_id
from ..rpc.node_api import SubmitResult
from .otel import TxSpans
from .traces import decode_note, encode_note, valid_trace_id
from .waiters import Submitted, Waiter

TRACES_KEPT = 10_000


class SubmitMixin:
    """NodeAPI writes of `Node`."""

    _spans: TxSpans | None = None  # OTLP export of traced txs (otel.py), when on

    async def submit(self, request: Request) -> SubmitResult:
        """Hand a client-signed request to the replica task (CheckTx semantics): "accepted" once
        it is in the pool, "committed" with the ORIGINAL result if this (client_id, request_seq)
        already executed, "rejected" with a reason otherwise."""
        early = self._precheck(request)
        if isinstance(early, SubmitResult):
            return early
        await self._announce_trace(early)
        await self._inbox_send.send(early)
        return await self._submitted(early)

    async def submit_many(self, requests: Sequence[Request]) -> list[SubmitResult]:
        """`submit` for each request, in order, as one hand-off: all go into the inbox before
        the first wait, so the replica task takes them in one group (one FORWARD)."""
        early = [self._precheck(r) for r in requests]
        for e in early:  # before the hand-off below, which must not yield between items
            if isinstance(e, Submitted):
                await self._announce_trace(e)
        for e in early:
            if isinstance(e, Submitted):
                # without yielding between items (an awaited send is a checkpoint): the replica
                # task must find them all in one group, else they split over several FORWARDs
                # and blocks (measured: 88 -> 78 txs per block, +6 % CPU per tx)
                try:
                    self._inbox_send.send_nowait(e)
                except trio.WouldBlock:  # inbox full: back-pressure as `submit` has
                    await self._inbox_send.send(e)
        return [e if isinstance(e, SubmitResult) else await self._submitted(e) for e in early]

    async def _announce_trace(self, sub: Submitted) -> None:
        """A traced tx: tell the peers its trace id (traces.py), so their `tx committed` lines
        carry it too. Untraced txs (the hot path) send nothing."""
        if sub.trace_id is None:
            return
        try:
            await self.transport.broadcast(encode_note(request_digest(sub.request),
                                                       sub.trace_id))
        except (FramingError, ValueError) as exc:  # best effort: only the peers' lines miss it
            self.log.warning("trace note not sent", reason=str(exc)[:200])

    def _on_trace_note(self, peer: int, data: bytes) -> None:
        note = decode_note(data)
        if note is None:
            self.metrics.rejected.labels("bad-trace-note").inc()
            self._fault_log.warning("dropped trace note", peer, "malformed")
            return
        self._peer_traces.add(peer, *note)
        if self._spans is not None:
            self._spans.learned(*note)

    def quota_refusal(self, request: Request, ahead: int = 0, own: int = 0) -> str | None:
        """The replica's pending-quota refusal of this request now (asked by the RPC before a
        signature check: a flood past its quota costs a lookup per tx, not a verify), with
        `ahead` txs of its call before it (`own` of them its client's). None for a committed
        request: its submit answers with its result."""
        reason = self.replica.quota_refusal(request, ahead, own)
        if reason is None or self.store.tx_by_client(request.client_id,
                                                     request.request_seq) is not None:
            return None
        self.metrics.rejected.labels("tx:client-quota").inc()
        return reason

    def _precheck(self, request: Request) -> SubmitResult | Submitted:
        """What `submit` decides before the replica task: an answer, or the item to queue."""
        tx_hash = request_digest(request)
        done = self.store.tx_by_client(request.client_id, request.request_seq)
        if done is not None:
            return SubmitResult("committed", done.tx_hash, result=done)
        reason = self.app.check_tx(request.op)
        if reason is not None:
            self.metrics.rejected.labels("check_tx").inc()
            self.log.info("tx rejected", tx=tx_hash.hex()[:16], reason=reason)
            return SubmitResult("rejected", tx_hash, reason=reason)
        tid = current_trace_id()
        if tid is not None:  # carried into the replica task's log line for this tx's commit
            self._traces[tx_hash] = tid
            if self._spans is not None:
                self._spans.learned(tx_hash, tid)
            while len(self._traces) > TRACES_KEPT:
                self._traces.popitem(last=False)
        return Submitted(request, Waiter(), valid_trace_id(tid))

    async def _submitted(self, sub: Submitted) -> SubmitResult:
        request = sub.request
        tx_hash = request_digest(request)
        if not sub.accepted.done.is_set():  # submit_many: the rest of a batch is answered by
            await sub.accepted.done.wait()  # then; wait() on a set Event still yields (~10 us)
        if sub.accepted.error is not None:
            return SubmitResult("rejected", tx_hash, reason=sub.accepted.error.reason)
        if sub.accepted.result is not None and sub.accepted.result.get("duplicate"):
            done = self.store.tx_by_client(request.client_id, request.request_seq)
            if done is not None:
                return SubmitResult("committed", done.tx_hash, result=done)
        return SubmitResult("accepted", tx_hash)

    def sign_op(self, op: bytes, valid_until: int = 0) -> Request:
        """Sign `op` with the node's embedded-client key (the embedding API's submit)."""
        self._client_seq += 1
        req = Request(client_id=self._client.public_key, request_seq=self._client_seq, op=op,
                      valid_until=valid_until)
        return sign_request(self.domain, self._client.signer(), req)
