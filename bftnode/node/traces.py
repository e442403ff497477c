"""Trace ids across the validators: a tx submitted with a trace id (`X-Trace-Id`, or the
trace-id of a W3C `traceparent`: bftnode.logging.trace_from_headers) is announced to the peers in a TRACE note, beside the
consensus messages and outside anything signed; every node that executes the tx then logs its
`tx committed` line with that `trace_id`, so `grep <id>` over the nodes' logs shows the path
with each node's timestamps. Best effort: a note that arrives after the tx executed, or was
dropped, only leaves that node's line out.

Wire: TRACE_WIRE (a first byte no consensus message starts with) + tx hash (32) + the id as
ASCII (1..64 of [0-9A-Za-z._:-]). A peer's notes are kept in a table of its own, at most
PEER_TRACES_KEPT (oldest go first); a malformed note is dropped and counted.
Imports: stdlib only.
"""

from __future__ import annotations

import re
from collections import OrderedDict

TRACE_WIRE = b"\xf7"  # consensus messages start with their wire version byte (1)
TRACE_BYTE = TRACE_WIRE[0]
PEER_TRACES_KEPT = 1024
MAX_TRACE_ID = 64
_VALID = re.compile(rb"[0-9A-Za-z._:\-]{1,64}\Z")


def valid_trace_id(tid: str | None) -> str | None:
    """`tid` if it can travel in a note (ASCII, 1..64 of [0-9A-Za-z._:-]), else None."""
    if not tid or len(tid) > MAX_TRACE_ID or not tid.isascii():
        return None
    return tid if _VALID.match(tid.encode()) else None


def encode_note(tx_hash: bytes, tid: str) -> bytes:
    return TRACE_WIRE + tx_hash + tid.encode("ascii")


def decode_note(data: bytes) -> tuple[bytes, str] | None:
    """(tx hash, trace id) of a TRACE note; None if malformed."""
    if len(data) < 34 or len(data) > 33 + MAX_TRACE_ID or data[:1] != TRACE_WIRE:
        return None
    tid = data[33:]
    if not _VALID.match(tid):
        return None
    return data[1:33], tid.decode("ascii")


class PeerTraces:
    """Trace ids announced by peers: tx hash -> id, at most PEER_TRACES_KEPT per peer."""

    def __init__(self) -> None:
        self._by_peer: dict[int, OrderedDict[bytes, str]] = {}
        self.count = 0

    def add(self, peer: int, tx_hash: bytes, tid: str) -> None:
        table = self._by_peer.setdefault(peer, OrderedDict())
        if tx_hash not in table:
            self.count += 1
        table[tx_hash] = tid
        while len(table) > PEER_TRACES_KEPT:
            table.popitem(last=False)
            self.count -= 1

    def pop(self, tx_hash: bytes) -> str | None:
        """The id a peer announced for this tx (forgotten everywhere), None if none."""
        if not self.count:
            return None
        found = None
        for table in self._by_peer.values():
            tid = table.pop(tx_hash, None)
            if tid is not None:
                self.count -= 1
                found = found or tid
        return found
