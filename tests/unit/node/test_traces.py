"""Trace notes (bftnode.node.traces): the wire form round-trips, anything malformed is refused,
ids are restricted to what a log line and a note may carry, each peer's table is bounded, and
the trace id of a W3C traceparent header is taken when no X-Trace-Id is sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bftnode.logging import trace_from_headers
from bftnode.node.traces import (
    PEER_TRACES_KEPT,
    TRACE_WIRE,
    PeerTraces,
    decode_note,
    encode_note,
    valid_trace_id,
)
from consensus.codec import WIRE_VERSION

H = b"\x11" * 32


def test_a_note_round_trips_and_cannot_be_mistaken_for_a_consensus_message():
    assert TRACE_WIRE[0] != WIRE_VERSION
    assert decode_note(encode_note(H, "req-42.a:b")) == (H, "req-42.a:b")


@given(st.binary(max_size=120))
def test_any_bytes_decode_to_a_note_or_none(data):
    note = decode_note(TRACE_WIRE + data)
    if note is not None:
        tx, tid = note
        assert len(tx) == 32 and valid_trace_id(tid) == tid


def test_malformed_notes_and_ids_are_refused():
    for data in (b"", TRACE_WIRE, TRACE_WIRE + H, TRACE_WIRE + H + b"x" * 65,
                 TRACE_WIRE + H + b"bad id", TRACE_WIRE + H + b"\n", b"\x01" + H + b"id"):
        assert decode_note(data) is None, data
    for tid in ("", "x" * 65, "with space", "caf\u00e9", "line\nbreak", None):
        assert valid_trace_id(tid) is None
    assert valid_trace_id("4bf92f3577b34da6a3ce929d0e0e4736") == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_each_peers_table_is_bounded_and_a_pop_forgets_the_tx_everywhere():
    t = PeerTraces()
    for i in range(PEER_TRACES_KEPT + 50):
        t.add(1, i.to_bytes(32, "big"), f"t{i}")
    t.add(2, (7).to_bytes(32, "big"), "other")
    assert t.count == PEER_TRACES_KEPT + 1
    assert t.pop((0).to_bytes(32, "big")) is None  # peer 1's oldest went first
    # peer 1's flood pushed out only its own notes: peer 2's note for tx 7 survives it
    assert t.pop((7).to_bytes(32, "big")) == "other"
    t.add(1, (99_999).to_bytes(32, "big"), "mine")
    t.add(3, (99_999).to_bytes(32, "big"), "mine")
    assert t.pop((99_999).to_bytes(32, "big")) == "mine"
    assert t.pop((99_999).to_bytes(32, "big")) is None  # forgotten in both tables


def test_trace_id_from_headers():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_from_headers(None, tp) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_from_headers("mine", tp) == "mine"
    assert trace_from_headers(None, "00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert trace_from_headers(None, "garbage") is None
    assert trace_from_headers("y" * 100, None) == "y" * 64
