"""Structured logging for the node: structlog, JSON lines (or console), every line carrying
the node id and, where known, view, seq and a trace id.

A trace id arrives with an RPC request (`trace_context(trace_id)`, a contextvar) and is bound
into every log line emitted while handling it, including the replica task's lines about that
transaction (the runtime re-binds it when a tx it submitted is committed).
Imports: stdlib, structlog. Must not import trio, consensus, storage or network.
"""

from __future__ import annotations

import contextlib
import logging
import sys
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
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # libraries using stdlib logging (libp2p, hypercorn) go to the same stream, less verbose
    logging.basicConfig(level=max(_LEVELS.get(level, logging.INFO), logging.WARNING),
                        stream=stream or sys.stderr, force=True)
    if node_id is not None:
        structlog.contextvars.bind_contextvars(node=node_id)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("bftnode").bind(**bound)


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
