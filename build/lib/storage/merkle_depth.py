"""The state tree's depth bound: which new app keys a block may insert (docs/storage.md,
"State tree").

The ordered crit-bit trie (storage.merkle_tree) is as deep as its keys share prefixes: keys
x, xx, xxx, ... make one path as deep as there are keys, and every write on that path
rewrites every node of it. `DepthGuard` refuses, during a block's execution, an insert of a
new key whose leaf, or any leaf it pushes down, would sit deeper than MAX_STATE_DEPTH levels
below the root. It reads the tree of the block before (every replica has the same one: its
shape is a function of the key set) and keeps the block's admitted inserts in a scratch copy
of the tree's shape (copy-on-write nodes over the stored ones, with subtree heights, no
hashes), so each decision is exact for the keys so far; keys deleted earlier in the block
still count (a delete only makes paths shorter). Inserting k: follow k's bits to a leaf y,
take the first bit b where k and y differ; the new node goes above the first node N on that
path that splits below b, at depth d: k's leaf sits at d + 1 and N's leaves move one level
down, to at most d + 1 + height(N).
Fast path: nothing is walked while the block's keys S cannot break the bound, by either of
  (a) height(tree) + |S| <= MAX (each insert adds at most one level to any path), or
  (b) height(tree) + height(trie of S alone) + 1 <= MAX: a leaf x's path in the merged trie
      has one node per distinct crit bit of x against the other keys; against the tree's keys
      those are the nodes of x's (virtual) path in the tree, at most height(tree) (+1 when x
      is not in it), and against S's at most height(trie of S) (+1), one of the two +1s
      dropping because x is in one of the sets. `_trie_height` computes height(S) from the
      sorted keys (a Cartesian tree over adjacent crit bits); it is recomputed when |S| has
      grown by the slack it left (each key adds at most one level), and a slack below
      MIN_SLACK ends the fast path.
The first tx past both places the block's earlier keys in the scratch tree.
Imports: stdlib, storage.{keys,merkle_proof,merkle_tree}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import keys
from .merkle_proof import bit_at, crit_bit, encode_key
from .merkle_tree import AuthTree

MAX_STATE_DEPTH = 256
MIN_SLACK = 16  # fewer keys of room than this after a height(S) check: walk from then on


class _Leaf:
    """A key inserted by this block."""

    __slots__ = ("ekey",)

    def __init__(self, ekey: bytes) -> None:
        self.ekey = ekey


class _Inner:
    """A scratch internal node: one made by this block, or a copy of a stored one on the
    path of an insert. Children: stored node refs (bytes), _Leaf or _Inner."""

    __slots__ = ("bit", "kids", "height")

    def __init__(self, bit: int, kids: list, height: int) -> None:
        self.bit = bit
        self.kids = kids
        self.height = height


Node = bytes | _Leaf | _Inner | None


class DepthGuard:
    """One block's depth accounting over the tree at `version` (the previous block)."""

    def __init__(self, tree: AuthTree, version: int, max_depth: int | None = None,
                 prefix: bytes = keys.STATE) -> None:
        self._tree = tree
        self.max_depth = MAX_STATE_DEPTH if max_depth is None else max_depth
        self._prefix = prefix  # app key -> tree key
        sub = tree.root(version)
        self._root: Node = None if sub is None else sub[0]
        self._height = tree.height(version)
        self._puts = 0  # puts admitted on the fast path
        self._fast: list[bytes] = []  # their tree keys, placed when the fast path ends
        self._slow = False
        self._room = 0  # keys the fast path may still admit by bound (b) without a recheck

    def admit(self, app_keys: Sequence[bytes],
              exempt: Callable[[bytes], bool] | None = None) -> bytes | None:
        """Admit the keys one tx puts (app keys, in its order); returns the first key refused
        (then none of them is admitted) or None. `exempt(app_key)`: asked only for a key over
        the bound; True admits it anyway."""
        if not self._slow:
            new = [self._prefix + k for k in app_keys]
            if (self._height + self._puts + len(new) <= self.max_depth
                    or len(new) <= self._room or self._recheck(new)):
                self._puts += len(new)
                self._room -= len(new)
                self._fast.extend(new)
                return None
            self._slow = True
            for tk in self._fast:
                self._insert(encode_key(tk), None, [])
            self._fast = []
        undo: list[tuple] = []
        for k in app_keys:
            ekey = encode_key(self._prefix + k)
            if not self._insert(ekey, self.max_depth, undo, k, exempt):
                for u in reversed(undo):
                    _revert(self, u)
                return k
        return None

    def _recheck(self, new: list[bytes]) -> bool:
        """Bound (b) for the fast keys plus `new`: True (with `_room` set to the slack after
        `new`) if they cannot break the bound, and enough room is left to be worth it."""
        hs = _trie_height([encode_key(tk) for tk in self._fast + new])
        room = self.max_depth - self._height - hs - 1
        if room < MIN_SLACK:
            return False
        self._room = room + len(new)  # admit() takes len(new) off again
        return True

    def bound(self, app_key: bytes) -> int | None:
        """The deepest level inserting `app_key` now would put a leaf at (None: present)."""
        found = self._place(encode_key(self._prefix + app_key))
        return None if found is None else found[0]

    # ------------------------------------------------------------ scratch tree

    def _kid(self, node: Node, side: int) -> Node:
        if isinstance(node, _Inner):
            return node.kids[side]
        n = self._tree._node(node)  # type: ignore[arg-type]
        return n[5] if side else n[3]

    def _info(self, node: Node) -> tuple[int, int, bytes | None]:
        """(bit, height, leaf key): bit -1 for a leaf."""
        if isinstance(node, _Inner):
            return node.bit, node.height, None
        if isinstance(node, _Leaf):
            return -1, 0, node.ekey
        n = self._tree._node(node)  # type: ignore[arg-type]
        if n[0] == "L":
            return -1, 0, n[3]
        return n[1], n[7], None

    def _place(self, ekey: bytes) -> tuple[int, list[tuple[Node, int]], Node, int] | None:
        """(bound, path of (node, side taken) above N, N, b); None if the key is present."""
        if self._root is None:
            return 0, [], None, -1
        path: list[tuple[Node, int]] = []
        bits: list[int] = []
        node: Node = self._root
        nbits = len(ekey) * 8
        stored = self._tree._node
        while True:  # one lookup per level: this runs for every put past the fast path
            if type(node) is bytes:
                n = stored(node)
                if n[0] == "L":
                    leaf = n[3]
                    break
                bit = n[1]
                side = bit_at(ekey, bit) if bit < nbits else 0
                path.append((node, side))
                bits.append(bit)
                node = n[5] if side else n[3]
            elif type(node) is _Inner:
                bit = node.bit
                side = bit_at(ekey, bit) if bit < nbits else 0
                path.append((node, side))
                bits.append(bit)
                node = node.kids[side]
            else:
                leaf = node.ekey  # type: ignore[union-attr]
                break
        if leaf == ekey:
            return None
        b = crit_bit(ekey, leaf)  # type: ignore[arg-type]
        d = 0
        while d < len(bits) and bits[d] < b:
            d += 1
        n_node = path[d][0] if d < len(path) else node
        return d + 1 + self._info(n_node)[1], path[:d], n_node, b

    def _insert(self, ekey: bytes, limit: int | None, undo: list[tuple],
                app_key: bytes = b"", exempt: Callable[[bytes], bool] | None = None) -> bool:
        """Insert into the scratch tree unless its bound passes `limit` (None: no limit);
        False if refused. Over the limit, `exempt(app_key)` may still admit it."""
        found = self._place(ekey)
        if found is None:
            return True
        bound, path, n_node, b = found
        if limit is not None and bound > limit:
            if exempt is None or not exempt(app_key):
                return False
        leaf = _Leaf(ekey)
        if n_node is None:  # the empty tree
            undo.append(("root", self._root))
            self._root = leaf
            return True
        side = bit_at(ekey, b)
        new = _Inner(b, [n_node, leaf] if side else [leaf, n_node], bound - len(path))
        # copy the stored nodes of the path (a copy has the same shape: no undo needed)
        parent: _Inner | None = None
        for i, (node, s) in enumerate(path):
            if not isinstance(node, _Inner):
                bit, h, _ = self._info(node)
                node = _Inner(bit, [self._kid(node, 0), self._kid(node, 1)], h)
                if parent is None:
                    self._root = node
                else:
                    parent.kids[path[i - 1][1]] = node
                path[i] = (node, s)
            parent = node
        if parent is None:
            undo.append(("root", self._root))
            self._root = new
        else:
            s = path[-1][1]
            undo.append(("kid", parent, s, parent.kids[s]))
            parent.kids[s] = new
        h = new.height
        for node, _ in reversed(path):  # heights up the path
            assert isinstance(node, _Inner)
            h += 1
            if node.height >= h:
                break
            undo.append(("height", node, node.height))
            node.height = h
        return True


def _trie_height(ekeys: list[bytes]) -> int:
    """The height of the crit-bit trie over `ekeys` (encoded keys; 0 for at most one key):
    its internal nodes are the crit bits of adjacent sorted keys, arranged as their Cartesian
    tree (smallest bit at the root), so the height is that tree's depth + 1."""
    ks = sorted(set(ekeys))
    if len(ks) < 2:
        return 0
    crit = [crit_bit(ks[i], ks[i + 1]) for i in range(len(ks) - 1)]
    parent = [-1] * len(crit)
    stack: list[int] = []
    for i, c in enumerate(crit):
        last = -1
        while stack and crit[stack[-1]] > c:
            last = stack.pop()
        if last != -1:
            parent[last] = i
        if stack:
            parent[i] = stack[-1]
        stack.append(i)
    depth = [0] * len(crit)
    for i in sorted(range(len(crit)), key=crit.__getitem__):  # parents first (smaller bit)
        if parent[i] != -1:
            depth[i] = depth[parent[i]] + 1
    return max(depth) + 1


def _revert(guard: DepthGuard, u: tuple) -> None:
    if u[0] == "root":
        guard._root = u[1]
    elif u[0] == "kid":
        u[1].kids[u[2]] = u[3]
    else:
        u[1].height = u[2]
