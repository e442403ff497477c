"""The pending requests not yet in a batch of this view: oldest first for timers, round-robin
for batching.

A primary fills batches one request at a time over the sources (its own clients, each
relaying replica) in rotation and, within a source, over its clients in rotation, each client's
requests in arrival order. So a relay or a client with a deep queue gets one turn per round,
not the whole batch; the byte share per source (Replica._admit) bounds how much each may queue.
The rotation is built only when a batch is taken (a backup never takes one) and is rebuilt
when stale entries outnumber live ones.
Pure: stdlib only.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

Key = tuple[bytes, int]  # (client_id, request_seq)


class FairQueue:
    __slots__ = ("_order", "_rotation", "_stale", "nbytes")

    def __init__(self, items: Iterable[tuple[Key, int, int]] = ()) -> None:
        # key -> (source, request bytes), in arrival order
        self._order: OrderedDict[Key, tuple[int, int]] = OrderedDict()
        # source -> client -> that client's keys; None until the first pick
        self._rotation: OrderedDict[int, OrderedDict[bytes, deque[Key]]] | None = None
        self._stale = 0  # keys left in the rotation after they were discarded
        self.nbytes = 0  # request bytes of the keys held (is a full batch waiting?)
        for key, source, size in items:
            self._order[key] = (source, size)
            self.nbytes += size

    def __len__(self) -> int:
        return len(self._order)

    def __bool__(self) -> bool:
        return bool(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def oldest(self) -> Key:
        return next(iter(self._order))

    def add(self, key: Key, source: int, size: int) -> None:
        if key in self._order:
            return
        self._order[key] = (source, size)
        self.nbytes += size
        if self._rotation is not None:
            self._rotation.setdefault(source, OrderedDict()).setdefault(key[0], deque()).append(key)

    def discard(self, key: Key) -> None:
        entry = self._order.pop(key, None)
        if entry is None:
            return
        self.nbytes -= entry[1]
        if self._rotation is not None:
            self._stale += 1
            if self._stale > max(1024, len(self._order)):
                self._rotation = None  # rebuilt at the next pick

    def pick(self) -> Key | None:
        """The next key in fair order (not removed: `take` it to move the rotation on)."""
        if not self._order:
            return None
        rot = self._rotation
        if rot is None:
            rot = self._rotation = self._build()
        while rot:
            source, clients = next(iter(rot.items()))
            while clients:
                client, keys = next(iter(clients.items()))
                while keys and keys[0] not in self._order:
                    keys.popleft()
                    self._stale -= 1
                if keys:
                    return keys[0]
                del clients[client]
            del rot[source]
        return None

    def take(self, key: Key) -> None:
        """Remove `key`, which `pick` just returned, and give its client and source the back of
        their rotations."""
        source, size = self._order.pop(key)
        self.nbytes -= size
        rot = self._rotation
        assert rot is not None
        clients = rot[source]
        keys = clients[key[0]]
        keys.popleft()
        if keys:
            clients.move_to_end(key[0])
        else:
            del clients[key[0]]
        if clients:
            rot.move_to_end(source)
        else:
            del rot[source]

    def _build(self) -> OrderedDict[int, OrderedDict[bytes, deque[Key]]]:
        self._stale = 0
        rot: OrderedDict[int, OrderedDict[bytes, deque[Key]]] = OrderedDict()
        for key, (source, _) in self._order.items():
            rot.setdefault(source, OrderedDict()).setdefault(key[0], deque()).append(key)
        return rot
