"""The state tree's depth bound: which new app keys a block may insert (docs/storage.md,
"State tree").

The ordered crit-bit trie (storage.merkle_tree) is as deep as its keys share prefixes: keys
x, xx, xxx, ... make one path as deep as there are keys, and every write on that path
rewrites every node of it. `DepthGuard` refuses, during a block's execution, an insert of a
new key whose leaf, or any leaf it pushes down, could sit deeper than MAX_STATE_DEPTH levels
below the root. It answers from the tree of the block before (every replica has the same one:
its shape is a function of the key set) and the block's own inserts so far, so every replica
refuses the same txs.

Bound for an insert k, given the tree T of the previous block (heights stored per node) and
the inserts j already admitted in this block (each placed in T at the edge above a node N_j):
    D(k) + #{j : N_j on T's path root..N_k} + #{j : N_j strictly below N_k} <= MAX
D(k) = depth(N_k) + 1 + height(N_k) is the deepest leaf k's insertion alone makes. Every
insert adds at most one level to any path, and the leaves k touches (its own, those it pushes
down) are pushed down only by inserts placed above or inside N_k's subtree: the bound is exact
(never exceeded), conservative (an admitted key may sit higher than its bound). Fast path:
while height(T) + (puts so far) + 1 <= MAX no insert can break the bound and nothing is walked.
Keys already in T, deletes and keys admitted earlier in the block cost nothing.
Imports: stdlib, storage.{keys,merkle_proof,merkle_tree}.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from . import keys
from .merkle_proof import encode_key
from .merkle_tree import AuthTree, Placement

MAX_STATE_DEPTH = 256


class DepthGuard:
    """One block's depth accounting over the tree at `version` (the previous block)."""

    def __init__(self, tree: AuthTree, version: int, max_depth: int | None = None,
                 prefix: bytes = keys.STATE) -> None:
        self._tree = tree
        self._version = version
        self.max_depth = MAX_STATE_DEPTH if max_depth is None else max_depth
        self._prefix = prefix  # app key -> tree key
        self._height = tree.height(version)
        self._puts = 0  # puts admitted on the fast path (every put counted as an insert)
        self._fast: list[bytes] = []  # their tree keys, placed when the slow path starts
        self._slow = False
        self._new: set[bytes] = set()  # encoded tree keys admitted as inserts
        self._at: dict[bytes, int] = {}  # node ref -> inserts admitted on the edge above it
        self._sorted: list[bytes] = []  # encoded keys of the admitted inserts, sorted

    def admit(self, app_keys: Sequence[bytes],
              exempt: Callable[[bytes], bool] | None = None) -> bytes | None:
        """Admit the keys one tx puts (app keys, in its order); returns the first key refused
        (then none of them is admitted) or None. `exempt(app_key)`: asked only for a key over
        the bound; True admits it anyway (it is still counted)."""
        if not self._slow:
            if self._height + self._puts + len(app_keys) <= self.max_depth:
                self._puts += len(app_keys)
                self._fast.extend(self._prefix + k for k in app_keys)
                return None
            self._slow = True
            for tk in self._fast:
                p = self._probe(tk)
                if p is not None:
                    self._place(p[0], p[1])
            self._fast = []
        done: list[tuple[bytes, Placement]] = []
        for k in app_keys:
            p = self._probe(self._prefix + k)
            if p is None:
                continue
            ekey, place = p
            if self.bound(place) > self.max_depth and not (exempt is not None and exempt(k)):
                for e, pl in done:
                    self._unplace(e, pl)
                return k
            self._place(ekey, place)
            done.append((ekey, place))
        return None

    def bound(self, place: Placement) -> int:
        """The deepest level the insert at `place` can make, with this block's inserts."""
        at = self._at
        up = sum(at.get(r, 0) for r in place.path) if at else 0
        down = 0
        if place.inner is not None and self._sorted:
            lo, hi = place.inner
            s = self._sorted
            i = bisect.bisect_left(s, lo)
            j = len(s) if hi is None else bisect.bisect_left(s, hi, i)
            down = j - i
        return place.bound + up + down

    def _probe(self, tree_key: bytes) -> tuple[bytes, Placement] | None:
        ekey = encode_key(tree_key)
        if ekey in self._new:
            return None
        place = self._tree.probe(self._version, ekey)
        return None if place is None else (ekey, place)

    def _place(self, ekey: bytes, place: Placement) -> None:
        self._new.add(ekey)
        r = place.path[-1]
        self._at[r] = self._at.get(r, 0) + 1
        bisect.insort(self._sorted, ekey)

    def _unplace(self, ekey: bytes, place: Placement) -> None:
        self._new.discard(ekey)
        self._at[place.path[-1]] -= 1
        del self._sorted[bisect.bisect_left(self._sorted, ekey)]
