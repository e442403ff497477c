"""Framing: 4-byte big-endian length prefix, bounded size, zero length = keepalive."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.framing import (
    KEEPALIVE_FRAME,
    FrameDecoder,
    FramingError,
    encode_frame,
    encode_frames,
)

payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


@given(payloads, st.integers(min_value=1, max_value=50))
def test_any_split_of_the_byte_stream_decodes_to_the_same_frames(items, chunk):
    wire = encode_frames(items)
    dec = FrameDecoder(max_frame_size=300)
    out = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(wire[i : i + chunk])
    dec.close()
    assert out == items
    assert dec.buffered == 0


def test_header_is_four_byte_big_endian_length():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_keepalive_frames_are_counted_not_delivered():
    dec = FrameDecoder()
    assert dec.feed(KEEPALIVE_FRAME + encode_frame(b"x") + KEEPALIVE_FRAME) == [b"x"]
    assert dec.keepalives == 2


def test_oversized_length_is_rejected_before_the_payload_arrives_and_poisons_the_decoder():
    dec = FrameDecoder(max_frame_size=1024)
    with pytest.raises(FramingError, match="exceeds max frame size"):
        dec.feed(b"\x00\x00\x04\x01")  # 1025, no payload sent yet
    with pytest.raises(FramingError):
        dec.feed(encode_frame(b"ok"))


def test_frames_before_an_oversized_header_in_the_same_chunk_are_not_returned_partially():
    dec = FrameDecoder(max_frame_size=8)
    with pytest.raises(FramingError):
        dec.feed(encode_frame(b"good") + b"\xff\xff\xff\xff")


def test_stream_ending_inside_a_frame_is_an_error():
    dec = FrameDecoder()
    assert dec.feed(encode_frame(b"hello")[:-1]) == []
    with pytest.raises(FramingError, match="inside a frame"):
        dec.close()


def test_encode_refuses_empty_and_oversized_payloads():
    with pytest.raises(FramingError):
        encode_frame(b"")
    with pytest.raises(FramingError):
        encode_frame(b"x" * 9, max_frame_size=8)
    assert len(encode_frame(b"x" * 8, max_frame_size=8)) == 12


def test_default_max_frame_size_is_8_mib():
    dec = FrameDecoder()
    assert dec.max_frame_size == 8 * 1024 * 1024
    with pytest.raises(FramingError):
        dec.feed((8 * 1024 * 1024 + 1).to_bytes(4, "big"))
