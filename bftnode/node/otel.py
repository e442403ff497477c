"""Optional OpenTelemetry export of traced txs (OTLP over HTTP), beside the log lines of
traces.py. On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set and the SDK is installed (`pip install opentelemetry-sdk
opentelemetry-exporter-otlp-proto-http`); the SDK reads its other OTEL_* settings itself.

Each node exports one span per traced tx it executes, `bftnode.tx`, from when the node learned
the trace (the submission it took, or a peer's TRACE note) to the commit, in the caller's
trace: a W3C trace-id (32 hex, from `traceparent`) is used as it is, any other id is hashed
into one (BLAKE2b-128), so the four nodes' spans share a trace either way. Attributes: tx hash,
height, view, result code, validator index, chain id. Export is batched off the event loop by
the SDK; at most OPEN_KEPT traces wait for their commit (oldest dropped).
Imports: stdlib (the SDK lazily).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from typing import Any, Protocol

OPEN_KEPT = 4096
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class TxSpans(Protocol):
    def learned(self, tx_hash: bytes, trace_id: str) -> None: ...

    def committed(self, tx_hash: bytes, trace_id: str, height: int, view: int,
                  code: int) -> None: ...

    def shutdown(self) -> None: ...


def otel_trace_id(trace_id: str) -> int:
    """The 128-bit OpenTelemetry trace id for one of ours (nonzero)."""
    if len(trace_id) == 32:
        try:
            n = int(trace_id, 16)
            if n:
                return n
        except ValueError:
            pass
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=16).digest(), "big") or 1


class OtlpSpans:
    """TxSpans over an SDK TracerProvider (`exporter`: the SDK's SpanExporter)."""

    def __init__(self, exporter: Any, *, node_index: int, chain_id: str,
                 batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            TraceFlags,
            set_span_in_context,
        )

        # bound once here, not imported on every committed tx
        self._remote = NonRecordingSpan
        self._context = SpanContext
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._in_context = set_span_in_context
        resource = Resource.create({"service.name": "bftnode",
                                    "service.instance.id": f"{chain_id}/{node_index}"})
        self.provider = TracerProvider(resource=resource)
        proc = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(proc)
        self.tracer = self.provider.get_tracer("bftnode")
        self.attrs = {"bftnode.validator": node_index, "bftnode.chain_id": chain_id}
        self._open: OrderedDict[bytes, int] = OrderedDict()

    def learned(self, tx_hash: bytes, trace_id: str) -> None:
        if tx_hash not in self._open:
            self._open[tx_hash] = time.time_ns()
            while len(self._open) > OPEN_KEPT:
                self._open.popitem(last=False)

    def committed(self, tx_hash: bytes, trace_id: str, height: int, view: int,
                  code: int) -> None:
        end = time.time_ns()
        start = self._open.pop(tx_hash, end)
        parent = self._context(trace_id=otel_trace_id(trace_id),
                               span_id=int.from_bytes(os.urandom(8), "big") | 1,
                               is_remote=True, trace_flags=self._sampled)
        ctx = self._in_context(self._remote(parent))
        span = self.tracer.start_span("bftnode.tx", context=ctx, start_time=start, attributes={
            **self.attrs, "bftnode.tx_hash": tx_hash.hex(), "bftnode.height": height,
            "bftnode.view": view, "bftnode.code": code, "bftnode.trace_id": trace_id})
        span.end(end_time=end)

    def shutdown(self) -> None:
        self.provider.shutdown()


def from_env(node_index: int, chain_id: str, log: Any) -> TxSpans | None:
    """OtlpSpans when an OTLP endpoint is configured and the SDK importable, else None (with
    a warning when the endpoint is set but the SDK is missing)."""
    if not any(os.environ.get(v) for v in ENDPOINT_VARS):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("otlp export off", reason="OTEL_EXPORTER_OTLP_ENDPOINT is set but "
                    "opentelemetry-sdk / opentelemetry-exporter-otlp-proto-http are not installed")
        return None
    spans = OtlpSpans(OTLPSpanExporter(), node_index=node_index, chain_id=chain_id)
    log.info("otlp export on", endpoint=next(os.environ[v] for v in ENDPOINT_VARS
                                               if os.environ.get(v)))
    return spans
