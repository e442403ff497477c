"""OTLP export of traced txs (bftnode.node.otel) through the real SDK exporter to a real
OTLP/HTTP receiver on 127.0.0.1: one span per tx from when the node learned its trace to the
commit, in the caller's W3C trace (or a hash of any other id), with the tx's attributes."""

from __future__ import annotations

import hashlib

import structlog

from bftnode.node import otel
from tests.otlp_receiver import OtlpReceiver


def test_no_endpoint_no_export(monkeypatch):
    for v in otel.ENDPOINT_VARS:
        monkeypatch.delenv(v, raising=False)
    assert otel.from_env(0, "c", structlog.get_logger()) is None


def test_spans_reach_an_otlp_receiver_in_the_callers_trace(monkeypatch):
    with OtlpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url)
        spans = otel.from_env(2, "chain-x", structlog.get_logger())
        assert isinstance(spans, otel.OtlpSpans)
        w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
        spans.learned(b"\x01" * 32, w3c)
        spans.committed(b"\x01" * 32, w3c, 5, 1, 0)
        spans.committed(b"\x02" * 32, "order-17", 6, 1, 3)  # learned never: zero length
        spans.shutdown()  # flushes
        [a] = rx.with_trace(w3c)
        assert a["name"] == "bftnode.tx" and a["instance"] == "chain-x/2"
        assert a["attrs"]["bftnode.height"] == 5 and a["attrs"]["bftnode.tx_hash"] == "01" * 32
        assert a["attrs"]["bftnode.validator"] == 2 and a["start"] <= a["end"]
        hashed = hashlib.blake2b(b"order-17", digest_size=16).hexdigest()
        [b] = rx.with_trace(hashed)
        assert b["attrs"]["bftnode.code"] == 3 and b["attrs"]["bftnode.trace_id"] == "order-17"


def test_open_traces_are_bounded():
    spans = otel.OtlpSpans(_NullExporter(), node_index=0, chain_id="c", batch=False)
    for i in range(otel.OPEN_KEPT + 10):
        spans.learned(i.to_bytes(32, "big"), "t")
    assert len(spans._open) == otel.OPEN_KEPT
    assert (0).to_bytes(32, "big") not in spans._open  # the oldest went first
    spans.shutdown()


class _NullExporter:
    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True
