"""Structured logs carry the node id and trace id as JSON; each node has its own metrics."""

from __future__ import annotations

import io
import json

import structlog

from bftnode.logging import configure_logging, get_logger, trace_context
from bftnode.metrics import NodeMetrics


def test_log_lines_are_json_with_node_and_trace_id():
    buf = io.StringIO()
    try:
        configure_logging("info", stream=buf)
        log = get_logger(node=2)
        with trace_context("abc123"):
            log.info("tx submitted", view=3, seq=9)
        log.debug("hidden at info level")
        log.warning("outside", peer=1, reason="bad bytes")
    finally:
        structlog.reset_defaults()
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["trace_id"] == "abc123" and lines[0]["node"] == 2
    assert lines[0]["view"] == 3 and lines[0]["seq"] == 9 and lines[0]["level"] == "info"
    assert "trace_id" not in lines[1] and lines[1]["reason"] == "bad bytes"


def test_stdlib_log_lines_of_libraries_are_json_too():
    import logging

    buf = io.StringIO()
    try:
        configure_logging("info", node_id="3", stream=buf)
        logging.getLogger("libp2p.transport").warning("dial failed: %s", "refused")
        try:
            raise OSError("boom")
        except OSError:
            logging.getLogger("hypercorn.error").exception("connection lost")
        logging.getLogger("libp2p.x").info("below warning: dropped")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers = []
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]  # every line is JSON
    assert [ln["logger"] for ln in lines] == ["libp2p.transport", "hypercorn.error"]
    assert lines[0]["event"] == "dial failed: refused" and lines[0]["level"] == "warning"
    assert lines[0]["node"] == "3" and "timestamp" in lines[0]
    assert lines[1]["level"] == "error" and "OSError: boom" in lines[1]["exception"]


def test_process_and_python_metrics_are_exported():
    text = NodeMetrics(0).text().decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "python_info", "python_gc_objects_collected_total"):
        assert name in text, name


def test_metrics_registries_are_per_node():
    a, b = NodeMetrics(0), NodeMetrics(1)
    a.height.set(7)
    a.rejected.labels("undecodable").inc(2)
    a.evidence.labels("equivocation", "3").inc()
    assert a.value("bftnode_height") == 7 and b.value("bftnode_height") == 0
    assert a.value("bftnode_rejected_inputs_total", {"reason": "undecodable"}) == 2
    text = a.text().decode()
    assert 'bftnode_evidence_total{kind="equivocation",replica="3"} 1.0' in text


def test_hypercorns_error_log_has_no_plain_text_handler_of_its_own():
    from hypercorn.logging import Logger

    from bftnode.rpc.limits import RPCLimits
    from bftnode.rpc.server import hypercorn_config

    cfg = hypercorn_config(RPCLimits(), 1024)
    Logger(cfg)  # what hypercorn builds from the config at serve time
    import logging

    hyper = logging.getLogger("hypercorn.error")
    assert hyper.handlers == [] and hyper.propagate  # its lines go to the root's JSON handler


def test_libp2p_warnings_come_out_as_json_after_its_import_detached_them():
    import logging

    import network.libp2p  # noqa: F401  (py-libp2p's import turns propagation off)

    buf = io.StringIO()
    try:
        configure_logging("info", stream=buf)
        logging.getLogger("libp2p.transport.tcp").error("Failed to open TCP stream: %s", "x")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers = []
    (line,) = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert line["logger"] == "libp2p.transport.tcp" and line["level"] == "error"
