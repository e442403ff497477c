"""Sans-I/O length-prefixed framing for the validator mesh.

Owns the wire framing only: a frame is a 4-byte big-endian unsigned length followed by that many
payload bytes. A zero-length frame is a keepalive (it carries no payload and is never delivered
to the consumer). Lengths above `max_frame_size` are a protocol violation: the decoder raises
`FramingError` and the caller closes the stream.

No I/O here, and no imports of ours (network imports nothing of bftnode/consensus/storage).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

HEADER_SIZE = 4
DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024
KEEPALIVE_FRAME = b"\x00\x00\x00\x00"

_HEADER = struct.Struct(">I")


class FramingError(ValueError):
    """The byte stream violates the framing (oversized length, truncated frame)."""


def encode_frame(payload: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Return `payload` with its 4-byte big-endian length prefix.

    Raises FramingError for an empty payload (reserved for keepalives) or one larger than
    `max_frame_size`: that is our own misuse, not peer input.
    """
    n = len(payload)
    if n == 0:
        raise FramingError("empty payload: zero length is reserved for keepalive frames")
    if n > max_frame_size:
        raise FramingError(f"payload of {n} bytes exceeds max frame size {max_frame_size}")
    return _HEADER.pack(n) + payload


def encode_frames(payloads: Iterable[bytes], max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Encode several payloads into one contiguous byte string (one write)."""
    return b"".join(encode_frame(p, max_frame_size) for p in payloads)


class FrameDecoder:
    """Incremental decoder: `feed(bytes) -> list[bytes]` of complete payloads.

    Keepalive (zero-length) frames are counted in `keepalives` and not returned. After a
    FramingError the decoder is poisoned (every later call raises): the stream must be closed.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be positive")
        self.max_frame_size = max_frame_size
        self.keepalives = 0
        self._buf = bytearray()
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (n,) = _HEADER.unpack_from(buf, pos)
            if n > self.max_frame_size:
                self._error = FramingError(
                    f"frame length {n} exceeds max frame size {self.max_frame_size}"
                )
                del buf[:]
                raise self._error
            if end - pos - HEADER_SIZE < n:
                break
            start = pos + HEADER_SIZE
            if n == 0:
                self.keepalives += 1
            else:
                frames.append(bytes(buf[start : start + n]))
            pos = start + n
        if pos:
            del buf[:pos]
        return frames

    def close(self) -> None:
        """Signal end of stream; raises FramingError if a partial frame is left over."""
        if self._error is not None:
            raise self._error
        if self._buf:
            self._error = FramingError(f"stream ended inside a frame ({len(self._buf)} bytes)")
            raise self._error
