"""The client's key file and its request_seq file.

Owns: the client key (Ed25519 seed, created mode 0600 on first use; default
$BFTNODE_HOME/client.key or ~/.bftnode/client.key) and request_seq allocation: monotonic,
reserved in blocks in `<key>.seq` next to the key file, starting from a time-based value so a
lost seq file never reuses a seq. Imports: stdlib, bftnode.keys.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from ..keys import KeyFileError, NodeKey, generate_key_file, load_key_file

SEQ_RESERVE = 256


def default_key_path() -> Path:
    home = os.environ.get("BFTNODE_HOME")
    base = Path(home) if home else Path.home() / ".bftnode"
    return base / "client.key"


def load_or_create_key(path: str | os.PathLike | None = None) -> NodeKey:
    """Load the client key, creating it (mode 0600) on first use."""
    p = Path(path) if path is not None else default_key_path()
    if not p.exists():
        try:
            return generate_key_file(p)
        except KeyFileError:
            if not p.exists():
                raise
            # another process created it at the same moment: load theirs
    return load_key_file(p)


def key_and_seq_path(
    key: str | os.PathLike | NodeKey | None, seq_file: str | os.PathLike | None | bool
) -> tuple[NodeKey, Path | None]:
    """The client key and where its request_seqs are reserved: `<key>.seq` for a key file,
    memory for a NodeKey or `seq_file=False`, `seq_file` when it is a path."""
    if isinstance(key, NodeKey):
        node_key, seq_path = key, None
    else:
        key_path = Path(key) if key is not None else default_key_path()
        node_key = load_or_create_key(key_path)
        seq_path = key_path.with_name(key_path.name + ".seq")
    if seq_file is False:
        seq_path = None
    elif seq_file not in (None, True):
        seq_path = Path(seq_file)  # type: ignore[arg-type]
    return node_key, seq_path


class SeqAllocator:
    """Monotonic request_seqs for one client key, safe across restarts and processes.

    Reserves SEQ_RESERVE values at a time in `<key>.seq` under an flock (one fsync per
    block); unused values of a reservation are skipped, never reused. The first value ever is
    time-based (microseconds), so deleting the seq file cannot make an old seq come back.
    `path=None` keeps it in memory (time-based start)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self._next = 0
        self._limit = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            if self._next >= self._limit:
                self._reserve()
            v = self._next
            self._next += 1
            return v

    def _reserve(self) -> None:
        floor = time.time_ns() // 1000
        if self.path is None:
            start = max(self._limit, floor)
            self._next, self._limit = start, start + SEQ_RESERVE
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64).decode("ascii", "replace").strip()
            stored = int(raw) if raw.isdigit() else 0
            start = max(stored, self._limit, 0 if stored else floor)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{start + SEQ_RESERVE}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the flock
        self._next, self._limit = start, start + SEQ_RESERVE
