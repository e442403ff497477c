"""A dict-backed StateReader with `apply(writes)`, for tests and the simulator.

Owns nothing durable. Same `iterate` semantics as storage: keys with `prefix` in ascending
byte order; `start` keeps keys >= start (<= start when `reverse`). Imports: stdlib only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class MemoryState:
    """Application state in memory: a sorted key list plus a dict."""

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self.apply((k, v) for k, v in items)

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def apply(self, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply state writes (None = delete), e.g. `BlockEffects.writes`."""
        for key, value in writes:
            if value is None:
                if key in self._data:
                    del self._data[key]
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = bytes(value)

    def iterate(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self._keys, prefix)
        hi = lo
        # keys with `prefix` are contiguous from lo
        while hi < len(self._keys) and self._keys[hi].startswith(prefix):
            hi += 1
        keys = self._keys[lo:hi]
        if start is not None:
            keys = keys[: bisect.bisect_right(keys, start)] if reverse else keys[
                bisect.bisect_left(keys, start) :
            ]
        if reverse:
            keys.reverse()
        for k in keys:  # a copy: safe against writes during iteration
            yield k, self._data[k]

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, self._data[k]) for k in self._keys]

    def __len__(self) -> int:
        return len(self._data)
