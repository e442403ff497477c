"""App events kept with their block: the encoding the node stores (`encode`) and reads back
(`decode`), so a subscriber resumes from any retained height, across restarts.

The executor encodes a block's events into `BlockCommit.events`; storage writes them in the
block's own batch and prunes them with it (storage.keys `N`). An application that offers
`encode_events` / `decode_events` (`EventCodec`; the KV application does: AppEvent fields as
msgpack arrays) chooses the stored form and gets its own types back; any other application's
events are stored as plain msgpack (msgspec Structs as maps) and come back as plain values
(dicts, lists). Events that cannot be encoded are not stored (`encode` -> None): those
blocks' events are then served from memory only.
Imports: stdlib, msgspec, structlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec
import structlog

log = structlog.get_logger("bftnode.node")
EMPTY = msgspec.msgpack.encode([])


@runtime_checkable
class EventCodec(Protocol):
    """Optional on an Application: the stored form of its events, and back."""

    def encode_events(self, events: Sequence[Any]) -> bytes: ...

    def decode_events(self, raw: bytes) -> Sequence[Any]: ...


@runtime_checkable
class StoredEvents(Protocol):
    """Optional on a Store (storage.LedgerStore has it): the events stored with a block."""

    def app_events(self, height: int) -> bytes | None: ...


_warned = False


def encode(app: Any, events: Sequence[Any]) -> bytes | None:
    """The stored form of one block's events; None if they cannot be encoded."""
    if not events:
        return EMPTY
    try:
        if isinstance(app, EventCodec):
            return app.encode_events(events)
        return msgspec.msgpack.encode(events)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        global _warned
        if not _warned:  # once: an application's event type, not a per-block condition
            _warned = True
            log.warning("node.app_events_not_stored", reason=str(exc))
        return None


def decode(app: Any, raw: bytes) -> Sequence[Any]:
    """Stored events back: the application's own types when it decodes them."""
    if raw == EMPTY:
        return ()
    if isinstance(app, EventCodec):
        return app.decode_events(raw)
    return msgspec.msgpack.decode(raw)


def stored(store: Any, app: Any, height: int) -> Sequence[Any] | None:
    """Block `height`'s events from the store; None when it keeps none for that height."""
    if not isinstance(store, StoredEvents):
        return None
    raw = store.app_events(height)
    return None if raw is None else decode(app, raw)
