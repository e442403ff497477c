"""Shortcuts and fixes on py-libp2p's hot paths, installed when this module is imported
(py-libp2p is pinned; each installer returns False and patches nothing if the code it replaces
changed shape):

* `_cache_yamux_tuning`: memoise Yamux's PY_YAMUX_* environment readers (read once, not per frame).
* `_credit_on_half_window`: go-yamux's receive-credit rule (a WINDOW_UPDATE per half window).
* `_lean_yamux_writes`: a synchronous Yamux write when the message fits the window and one frame.
* `_buffered_tcp_reads`: read-ahead on the raw TCP stream under Noise.

BFTNODE_LIBP2P_STOCK=1 keeps py-libp2p's own read and write paths (the first two still apply).
Imports: stdlib, trio, libp2p. Nothing of ours.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from typing import Any

import trio
from libp2p.stream_muxer.yamux import yamux as _yamux_module


def _cache_yamux_tuning() -> int:
    """py-libp2p's Yamux reads its PY_YAMUX_* tuning variables from the environment at call
    time, several times per frame (`os.getenv` each): ~3 % of a loaded node's CPU. A node's
    environment does not change while it runs, so the readers are memoised (the values are
    still read from the environment, once). Returns how many readers were wrapped."""
    wrapped = 0
    for name in ("_py_yamux_env", "_py_yamux_env_set", "_perf_yamux_debug_enabled",
                 "_yamux_disable_hysteresis", "_yamux_release_on_read",
                 "_yamux_batch_threshold_divisor", "_yamux_data_read_timeout"):
        fn = getattr(_yamux_module, name, None)
        if callable(fn) and not hasattr(fn, "cache_info"):
            setattr(_yamux_module, name, functools.cache(fn))
            wrapped += 1
    return wrapped


async def _credit_per_half_window(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's receive-credit rule for py-libp2p's YamuxStream: send a WINDOW_UPDATE only
    once half the target window has been consumed (`_grow_threshold`). py-libp2p 0.8.1 returns
    credit after nearly EVERY read (its "partial slack" and "release on read" branches): one
    frame back per message read, with its Noise + Yamux work on both ends. No stall: a sender
    at zero window means the whole window is in flight or buffered, so the reader that
    consumes it sees a delta of the whole window and credits it. Window auto-tuning is kept.
    Most reads return no credit: that is decided without taking the lock (no await between
    the check and the return, so it is atomic under trio)."""
    buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
    delta = self.target_recv_window - (self.recv_window + buffered)
    if delta <= 0 or delta < self._grow_threshold():
        return
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            self.recv_window += delta
            total = delta + self._apply_autotune_epoch(buffered)
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


def _credit_on_half_window() -> bool:
    """Install `_credit_per_half_window` (py-libp2p is pinned; the integration test
    test_net_libp2p_yamux_credit fails if the method it replaces changes shape)."""
    stream_cls = _yamux_module.YamuxStream
    if not hasattr(stream_cls, "_auto_tune_and_send_window_update"):
        return False
    stream_cls._auto_tune_and_send_window_update = _credit_per_half_window
    return True


_YAMUX_LOG = logging.getLogger(_yamux_module.__name__)


def _lean_yamux_writes() -> bool:
    """Two shortcuts on py-libp2p's Yamux write path, which costs a fixed ~0.3 ms of CPU per
    write on this machine whatever its size (profiled: 15 % of a node's CPU at 200 tx/s).

    * `YamuxStream.write`: when the whole message fits the send window and one frame, take
      the window and build the frame synchronously (atomic under trio), instead of two lock
      acquisitions (each a scheduler round trip) and an eager debug f-string. Any other case
      (window short, oversized, closed, a lock held) goes through the original.
    * `Yamux._write_frame`: the same serialised write, without unpacking and formatting the
      header for a debug line that is off (the original runs when DEBUG is on).
    Returns False if py-libp2p's shape changed (nothing patched)."""
    stream_cls, conn_cls = _yamux_module.YamuxStream, _yamux_module.Yamux
    if getattr(stream_cls.write, "_bftnode_lean", False):
        return True
    needed = ("YAMUX_HEADER_FORMAT", "TYPE_DATA", "HEADER_SIZE", "MAX_MESSAGE_SIZE")
    if not all(hasattr(_yamux_module, n) for n in needed):
        return False
    orig_write, orig_frame = stream_cls.write, conn_cls._write_frame
    pack = struct.Struct(_yamux_module.YAMUX_HEADER_FORMAT).pack
    type_data = _yamux_module.TYPE_DATA
    limit = _yamux_module.MAX_MESSAGE_SIZE - _yamux_module.HEADER_SIZE

    async def write(self: Any, data: bytes) -> None:
        n = len(data)
        writer_lock = getattr(self.rw_lock, "_writer_lock", None)
        if (not 0 < n <= limit or self.send_closed or self.closed or self.send_window < n
                or self.window_lock.locked() or writer_lock is None or writer_lock.value < 1):
            await orig_write(self, data)
            return
        self.send_window -= n
        await self.conn._write_frame(pack(0, type_data, 0, self.stream_id, n) + data)

    async def _write_frame(self: Any, data: bytes) -> None:
        if _YAMUX_LOG.isEnabledFor(logging.DEBUG):
            await orig_frame(self, data)
            return
        async with self._write_lock:
            await self.secured_conn.write(data)
        await trio.lowlevel.checkpoint()

    write._bftnode_lean = True  # type: ignore[attr-defined]
    stream_cls.write = write
    conn_cls._write_frame = _write_frame
    return True


TCP_READ_AHEAD = 64 * 1024


def _buffered_tcp_reads() -> bool:
    """Read ahead on py-libp2p's raw TCP stream. Noise reads each message as two exact reads
    (2-byte length, then body), each a socket receive behind a lock (two scheduler round
    trips); here one receive of up to TCP_READ_AHEAD bytes serves the following reads from a
    buffer, synchronously. The bytes are handed out in stream order: the buffer is taken from
    its front and is refilled only under the read lock by a read that found it empty.
    Errors map as in py-libp2p 0.8.1 (reset -> ConnectionClosedError, closed here -> b"").
    Returns False if py-libp2p's shape changed (nothing patched)."""
    from libp2p.io.exceptions import ConnectionClosedError
    from libp2p.io.trio import TrioTCPStream

    if getattr(TrioTCPStream.read, "_bftnode_buffered", False):
        return True
    if "read_lock" not in getattr(TrioTCPStream, "__annotations__", {}):
        return False

    def take(buf: bytearray, n: int | None) -> bytes:
        if n is None or n >= len(buf):
            out = bytes(buf)
            buf.clear()
        else:
            out = bytes(buf[:n])
            del buf[:n]
        return out

    async def read(self: Any, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        buf = self.__dict__.get("_bftnode_rbuf")
        if buf:
            return take(buf, n)
        async with self.read_lock:
            if buf is None:
                buf = self.__dict__.setdefault("_bftnode_rbuf", bytearray())
            if not buf:
                try:
                    data = await self.stream.receive_some(max(n or 0, TCP_READ_AHEAD))
                except trio.BrokenResourceError as error:
                    raise ConnectionClosedError(
                        f"TCP connection reset by remote peer: {error}", transport="tcp"
                    ) from error
                except trio.ClosedResourceError:
                    return b""
                if n is None or len(data) <= n:
                    return data
                buf += data
            return take(buf, n)

    read._bftnode_buffered = True  # type: ignore[attr-defined]
    TrioTCPStream.read = read
    return True


_credit_on_half_window()
_cache_yamux_tuning()
# BFTNODE_LIBP2P_STOCK=1 keeps py-libp2p's own read and write paths (to rule the shortcuts out)
if os.environ.get("BFTNODE_LIBP2P_STOCK", "") != "1":
    _lean_yamux_writes()
    _buffered_tcp_reads()
