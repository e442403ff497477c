"""Structured logging for the node: structlog, JSON lines (or console), every line carrying
the node id and, where known, view, seq and a trace id.

A trace id arrives with an RPC request (`trace_context(trace_id)`, a contextvar) and is bound
into every log line emitted while handling it, including the replica task's lines about that
transaction (bftnode.node re-binds it when a tx it submitted is committed).
Imports: stdlib, structlog. Must not import trio, consensus, storage or network.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(
    level: str = "info", node_id: str | None = None, fmt: str = "json",
    stream: IO[str] | None = None,
) -> None:
    """Configure structlog process-wide (call once at start-up of a node process)."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    out = stream or sys.stderr
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # libraries using stdlib logging (libp2p, hypercorn, trio) are rendered by the same
    # processors: one JSON line each (tracebacks in "exception"), named by "logger"
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    # py-libp2p's import detaches its logger (network/libp2p.py re-attaches it when imported
    # after this): its lines would reach stderr as bare text
    logging.getLogger("libp2p").propagate = True
    root.setLevel(max(_LEVELS.get(level, logging.INFO), logging.WARNING))  # less verbose
    if node_id is not None:
        structlog.contextvars.bind_contextvars(node=node_id)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("bftnode").bind(**bound)


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_from_headers(x_trace_id: str | None, traceparent: str | None) -> str | None:
    """The caller's trace id: `X-Trace-Id` (its first 64 characters), else the trace-id of a
    W3C `traceparent` (version-traceid-parentid-flags); None if neither."""
    if x_trace_id:
        return x_trace_id[:64]
    if traceparent:
        m = _TRACEPARENT.match(traceparent.strip().lower())
        if m and m.group(1) != "0" * 32:
            return m.group(1)
    return None


def new_trace_id() -> str:
    return uuid.uuid4().hex[:16]


@contextlib.contextmanager
def trace_context(trace_id: str | None = None, **extra: Any) -> Iterator[str]:
    """Bind `trace_id` (new if None) into every log line emitted inside the block."""
    tid = trace_id or new_trace_id()
    with structlog.contextvars.bound_contextvars(trace_id=tid, **extra):
        yield tid


def current_trace_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("trace_id")


class PeerFaultLog:
    """Warnings about a peer's faults, at most `burst` lines per (peer, reason) per `window_s`;
    the first line after a quiet spell says how many were left out. Bounded keys (oldest go)."""

    def __init__(self, log: Any, burst: int = 5, window_s: float = 10.0,
                 max_keys: int = 4096) -> None:
        self.log = log
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self.suppressed = 0  # lines left out so far
        self._keys: dict[tuple[Any, str], list[float]] = {}  # -> [window start, lines, left out]

    def warning(self, event: str, peer: Any, reason: str, **fields: Any) -> None:
        now = time.monotonic()
        key = (peer, f"{event}:{reason[:80]}")
        state = self._keys.get(key)
        if state is None or now - state[0] >= self.window_s:
            left_out = int(state[2]) if state else 0
            if state is None and len(self._keys) >= self.max_keys:
                del self._keys[next(iter(self._keys))]
            self._keys[key] = state = [now, 0, 0]
            if left_out:
                fields["suppressed_before"] = left_out
        if state[1] >= self.burst:
            state[2] += 1
            self.suppressed += 1
            return
        state[1] += 1
        self.log.warning(event, peer=peer, reason=reason, **fields)
