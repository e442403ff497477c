"""A node clock with an offset the testnet changes while the node runs (clock-skew faults).

`SkewedClock(path)` is a `clock_ms` for `build_node`: wall time in ms plus the offset in
`path` (a file holding one integer, milliseconds; absent or empty = 0), re-read at most every
`RECHECK_S`. The node's driver keeps its clock monotone (a negative jump holds time still), and
backups refuse a pre-prepare more than the chain's `max_clock_skew_ms` ahead of their own
clock, so offsets meant to stay inside the chain's time rules must keep |offset| below that
bound (`python -m testnet nemesis` uses at most 3/4 of it).
Imports: stdlib only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_OFFSET_FILE = "clock-offset"  # in the node's home
RECHECK_S = 0.2


def write_offset(home: str | os.PathLike, offset_ms: int) -> Path:
    """Atomically set node `home`'s clock offset (the running node picks it up within
    RECHECK_S)."""
    p = Path(home) / CLOCK_OFFSET_FILE
    tmp = p.with_suffix(".tmp")
    tmp.write_text(f"{int(offset_ms)}\n")
    os.replace(tmp, p)
    return p


def read_offset(path: str | os.PathLike) -> int:
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        return 0
    try:
        return int(text or 0)
    except ValueError:
        return 0  # a torn or bad file: no skew rather than a crashed node


class SkewedClock:
    """Callable wall clock (ms) plus the offset read from a file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.offset_ms = read_offset(self.path)
        self._checked = time.monotonic()

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._checked >= RECHECK_S:
            self._checked = now
            self.offset_ms = read_offset(self.path)
        return time.time_ns() // 1_000_000 + self.offset_ms
