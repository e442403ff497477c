"""The authenticated state tree: a versioned binary Merkle Patricia trie over ordered keys,
persisted in the ledger's KV next to the state it covers (storage.merkle_proof has the hashes,
the proof format and the verifier).

Versions are block heights. A node is written once, under `A n` + version(8) + index(4), and
never changed; a block's update writes the new nodes of its version, the root record `A r` +
version and ONE stale record `A s` + version listing the refs (12 bytes each) of the nodes it
replaces (they belong to versions before this one only). Pruning (keep the last `retain`
versions) deletes the roots below them and the nodes listed stale at or below the oldest kept
version (`AuthTree.prune_ops`). Everything is returned as ops for the caller's ONE batch.

`AuthTree.update` is deterministic: the changes of a block are sorted by key, so the same
writes give the same root (and the same node keys) on every replica, whatever their order.
Imports: stdlib, storage.{keys,kv,merkle_proof}.
"""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from . import keys
from .kv import KVReader, Op
from .merkle_proof import (
    EMPTY,
    EMPTY_ROOT,
    INTERNAL,
    LEAF,
    PRUNED,
    bit_at,
    crit_bit,
    encode_key,
    encode_proof,
    internal_hash,
    leaf_hash,
    outside,
    successor,
    top_bits,
    value_hash,
)

NODE = keys.MERKLE + b"n"
ROOT = keys.MERKLE + b"r"
STALE = keys.MERKLE + b"s"
PRUNED_TO = keys.MERKLE + b"p"  # u64: versions <= this are gone
FORMAT = keys.MERKLE + b"f"  # the node record format; another one: the tree is rebuilt
FORMAT_VERSION = b"\x04"  # 2: internal nodes carry their subtree's height; 3: one stale
# record per version (2 wrote a mark key per replaced node); 4: the tree covers each client's
# executed-seqs record (G), not its client index, top and floor (C, W, F)
REF_LEN = 12  # a node ref: version (8) + index (4)
DEFAULT_RETAIN = 100
CACHE_NODES = 200_000  # two generations of at most half each (see AuthTree._cache_put)
_LEAF_HDR = struct.Struct(">BI")
_INT = struct.Struct(">BII12s12s32s12s32s")
# Recursion limit while walking the tree (see _deep). Walks recurse once per level, at most
# merkle_depth.MAX_STATE_DEPTH (256). The limit is process-wide and C decoders (msgspec)
# recurse on the C stack up to it, so it must stay where a hostile nested frame decoded in
# another thread still ends in RecursionError, not a segfault (5,000 measured safe on 8 MB
# thread stacks; 200,000 is not).
DEEP = 3_000

# (ref, hash) of a subtree; None = empty
Sub = tuple[bytes, bytes] | None


class StaleVersion(LookupError):
    """The version asked for is not retained (pruned, or not yet written)."""


_deep_lock = threading.Lock()
_deep_users = 0
_deep_saved = 0


@contextmanager
def _deep() -> Iterator[None]:
    """Walks recurse once per tree level: at most MAX_STATE_DEPTH (256) levels plus the
    caller's frames. The limit is raised to DEEP while any walk runs, for headroom only."""
    global _deep_users, _deep_saved
    with _deep_lock:
        if _deep_users == 0:
            _deep_saved = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_deep_saved, DEEP))
        _deep_users += 1
    try:
        yield
    finally:
        with _deep_lock:
            _deep_users -= 1
            if _deep_users == 0:
                sys.setrecursionlimit(_deep_saved)


def _leaf_rec(key: bytes, value: bytes) -> bytes:
    return _LEAF_HDR.pack(LEAF, len(key)) + key + value


def _decode(rec: bytes) -> tuple:
    """("L", key, value, ekey) or ("I", bit, wref, lref, lh, rref, rh, height); wref: the
    node's first leaf, whose key gives the node's prefix (its first `bit` bits); height: the
    most levels from the node down to a leaf (a leaf's is 0)."""
    if rec[0] == LEAF:
        _, kl = _LEAF_HDR.unpack_from(rec)
        key = rec[5 : 5 + kl]
        return ("L", key, rec[5 + kl :], encode_key(key))
    _, bit, height, wref, lref, lh, rref, rh = _INT.unpack(rec)
    return ("I", bit, wref, lref, lh, rref, rh, height)


def _shares(ekey: bytes, prefix: bytes, bit: int) -> bool:
    return len(ekey) * 8 > bit and top_bits(ekey, bit) == top_bits(prefix, bit)


class AuthTree:
    """Updates and proofs of the tree stored in `kv` (reads see committed batches; the nodes
    of batches being built are in `pending` until `landed`)."""

    def __init__(self, kv: KVReader, retain: int = DEFAULT_RETAIN) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self.kv = kv
        self.retain = retain
        self._cache: dict[bytes, tuple] = {}  # young generation
        self._old: dict[bytes, tuple] = {}
        self.pending: dict[bytes, tuple] = {}
        self._pending_roots: dict[int, Sub] = {}
        self._vref = keys.u64(0)  # the version being built, as the first 8 bytes of a ref
        self._idx = 0
        self._ops: list[Op] = []
        self._marks: list[tuple[bytes, bytes]] = []  # stale records of the batch being built
        self._replaced: list[bytes] = []  # refs replaced by the version being built

    # ------------------------------------------------------------ nodes

    def _node(self, ref: bytes, reader: KVReader | None = None) -> tuple:
        n = self.pending.get(ref) or self._cache.get(ref)
        if n is not None:
            return n
        n = self._old.get(ref)
        if n is not None:
            if reader is None:
                self._cache_put(ref, n)  # still used: into the young generation
            return n
        rec = (reader or self.kv).get(NODE + ref)
        if rec is None:
            raise StaleVersion(f"tree node {ref.hex()} is missing (pruned?)")
        n = _decode(rec)
        if reader is None:
            self._cache_put(ref, n)
        return n

    def _cache_put(self, ref: bytes, n: tuple) -> None:
        self._cache[ref] = n
        if len(self._cache) >= CACHE_NODES // 2:
            self._age()

    def _age(self) -> None:
        """The young generation becomes the old one, the old one is dropped (O(1); a node
        read from the old one moves back to the young). Readers in other threads see one
        dict or the other, never one being rebuilt."""
        self._old, self._cache = self._cache, {}

    def forget(self) -> None:
        """Drop every cached node (after a crash: nodes of undone batches may be cached)."""
        self._cache, self._old = {}, {}

    def _new(self, node: tuple, rec: bytes, h: bytes) -> tuple[bytes, bytes]:
        ref = self._vref + self._idx.to_bytes(4, "big")
        self._idx += 1
        self.pending[ref] = node
        self._ops.append((NODE + ref, rec))
        return ref, h

    def _stale(self, ref: bytes) -> None:
        self._replaced.append(ref)

    def _repr(self, ref: bytes) -> tuple[bytes, int]:
        """(bytes ordering the subtree among keys outside it, bits of it that are known)."""
        n = self._node(ref)
        if n[0] == "L":
            return n[3], len(n[3]) * 8
        return self._node(n[2])[3], n[1]

    # ------------------------------------------------------------ roots

    def root(self, version: int, reader: KVReader | None = None) -> Sub:
        if version in self._pending_roots and reader is None:
            return self._pending_roots[version]
        raw = (reader or self.kv).get(ROOT + keys.u64(version))
        if raw is None:
            raise StaleVersion(f"no tree root for version {version} (not retained)")
        return None if raw == b"" else (raw[:12], raw[12:])

    def root_hash(self, version: int, reader: KVReader | None = None) -> bytes:
        sub = self.root(version, reader)
        return EMPTY_ROOT if sub is None else sub[1]

    # ------------------------------------------------------------ updates

    def update(self, version: int, prev: Sub, changes: Mapping[bytes, bytes | None]) -> Sub:
        """Apply one block's changes (key -> value, None = delete) to the tree `prev`, as
        version `version`; the ops to write accumulate until `take_ops`."""
        self._vref, self._idx = keys.u64(version), 0
        ch = sorted((encode_key(k), k, v) for k, v in changes.items())
        self._replaced = []
        with _deep():
            new = self._upd(prev, ch) if ch else prev
        if self._replaced:
            record = (STALE + self._vref, b"".join(self._replaced))
            self._marks.append(record)
            self._ops.append(record)
            self._replaced = []
        self._pending_roots[version] = new
        self._ops.append((ROOT + keys.u64(version), b"" if new is None else new[0] + new[1]))
        return new

    def build(self, version: int, items: Iterable[tuple[bytes, bytes]]) -> Sub:
        """A whole tree from (key, value) pairs, as version `version` (open or state import);
        the caller deletes every older `A` key in the same batch."""
        self._ops.append((FORMAT, FORMAT_VERSION))
        return self.update(version, None, dict(items))

    def format_ok(self) -> bool:
        """False if the stored tree has another node format (then it must be rebuilt)."""
        return self.kv.get(FORMAT) == FORMAT_VERSION

    def take_ops(self) -> list[Op]:
        ops, self._ops = self._ops, []
        return ops

    def landed(self) -> None:
        """The batch with the pending nodes is written: they become ordinary cached nodes."""
        self._cache.update(self.pending)
        if len(self._cache) >= CACHE_NODES // 2:
            self._age()
        self.pending = {}
        self._pending_roots.clear()
        self._marks.clear()

    def discard(self) -> None:
        """The batch was not written (a check failed, a crash): forget what it built."""
        self.pending.clear()
        self._pending_roots.clear()
        self._marks.clear()
        self._ops = []

    def _upd(self, sub: Sub, ch: list[tuple[bytes, bytes, bytes | None]]) -> Sub:
        if sub is None:
            return self._build([(e, 0, (k, v)) for e, k, v in ch if v is not None])
        ref, h = sub
        n = self._node(ref)
        if n[0] == "L":
            _, key, value, ekey = n
            merged = {ekey: (key, value)}
            for e, k, v in ch:
                if v is None:
                    merged.pop(e, None)
                else:
                    merged[e] = (k, v)
            if merged.get(ekey) == (key, value):
                if len(merged) == 1:
                    return sub
                del merged[ekey]
                items = [(ekey, len(ekey) * 8, sub)]
            else:
                self._stale(ref)
                items = []
            items += [(e, 0, kv) for e, kv in merged.items()]
            items.sort(key=lambda it: it[0])
            return self._build(items)
        _, bit, wref, lref, lh, rref, rh, _ = n
        prefix = self._node(wref)[3]
        if _shares(ch[0][0], prefix, bit) and _shares(ch[-1][0], prefix, bit):
            inside, out = ch, []  # sorted: everything between two keys of a prefix has it
        else:
            inside, out = [], []
            for c in ch:
                (inside if _shares(c[0], prefix, bit) else out).append(c)
        if inside:
            i, j = 0, len(inside)  # the first change with a 1 at `bit` (sorted: bisect)
            while i < j:
                m = (i + j) >> 1
                if bit_at(inside[m][0], bit):
                    j = m
                else:
                    i = m + 1
            left: Sub = (lref, lh)
            right: Sub = (rref, rh)
            if i:
                left = self._upd(left, inside[:i])
            if i < len(inside):
                right = self._upd(right, inside[i:])
            if left == (lref, lh) and right == (rref, rh):
                pass
            else:
                self._stale(ref)
                if left is None or right is None:
                    sub = left if right is None else right
                else:
                    sub = self._internal(bit, left, right)
        ins = [(e, 0, (k, v)) for e, k, v in out if v is not None]
        if not ins:
            return sub
        if sub is not None:
            rb, nbits = self._repr(sub[0])
            ins.append((rb, nbits, sub))
        ins.sort(key=lambda it: it[0])
        return self._build(ins)

    def _internal(self, bit: int, left: tuple[bytes, bytes],
                  right: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
        h = internal_hash(bit, left[1], right[1])
        ln = self._node(left[0])
        rn = self._node(right[0])
        wref = left[0] if ln[0] == "L" else ln[2]
        height = 1 + max(0 if ln[0] == "L" else ln[7], 0 if rn[0] == "L" else rn[7])
        node = ("I", bit, wref, left[0], left[1], right[0], right[1], height)
        rec = _INT.pack(INTERNAL, bit, height, wref, left[0], left[1], right[0], right[1])
        return self._new(node, rec, h)

    def _build(self, items: list[tuple[bytes, int, object]]) -> Sub:
        """A subtree over sorted items: (ekey, 0, (key, value)) a new leaf, or
        (ordering bytes, known bits, sub) an existing subtree kept whole."""
        if not items:
            return None
        if len(items) == 1:
            e, nbits, x = items[0]
            if nbits:
                return x  # an existing subtree
            key, value = x
            node = ("L", key, value, e)
            return self._new(node, _leaf_rec(key, value), leaf_hash(key, value_hash(value)))
        first, last = items[0][0], items[-1][0]
        bit = crit_bit(first, last)
        i = 1
        while bit_at(items[i][0], bit) == 0:
            i += 1
        left = self._build(items[:i])
        right = self._build(items[i:])
        return self._internal(bit, left, right)

    # ------------------------------------------------------------ depth

    def height(self, version: int) -> int:
        """The most levels from the root of `version` down to a leaf (0: a leaf or empty)."""
        sub = self.root(version)
        if sub is None:
            return 0
        n = self._node(sub[0])
        return 0 if n[0] == "L" else n[7]

    # ------------------------------------------------------------ pruning

    def prune_ops(self, version: int, reader: KVReader) -> list[Op]:
        """Ops dropping what only versions below the last `retain` (version - retain + 1 ..
        version) need. Call after the `update`s of the batch: the stale marks it reads are
        the committed ones plus those of this batch (written and deleted in the same batch)."""
        keep_from = version - self.retain + 1
        raw = reader.get(PRUNED_TO)
        prev = keys.from_u64(raw) if raw else 0
        if keep_from <= prev:
            return []
        ops: list[Op] = [(ROOT + keys.u64(v), None) for v in range(prev, keep_from)]
        # a node marked stale at s belongs to versions < s only: not needed once s <= keep_from
        lo, hi = STALE + keys.u64(prev + 1), STALE + keys.u64(keep_from + 1)
        records = list(reader.items(lo, hi))
        records += [(k, v) for k, v in self._marks if lo <= k < hi]
        for k, refs in records:
            ops.append((k, None))
            ops.extend((NODE + refs[i : i + REF_LEN], None) for i in range(0, len(refs), REF_LEN))
        ops.append((PRUNED_TO, keys.u64(keep_from)))
        return ops

    # ------------------------------------------------------------ proofs

    def prove(self, version: int, lo: bytes, hi: bytes | None, limit: int | None = None,
              reader: KVReader | None = None) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        """(root hash, entries with lo <= key < hi up to `limit`, proof) at `version`; read
        through `reader` (a snapshot, so pruning cannot pull nodes away mid-proof)."""
        sub = self.root(version, reader)
        if sub is None:
            return EMPTY_ROOT, [], encode_proof([(EMPTY,)])
        entries: list[tuple[bytes, bytes]] = []
        self._collect(sub[0], lo, hi, limit, entries, reader)
        if limit is not None and len(entries) >= limit:
            hi = successor(entries[-1][0])
        elo, ehi = encode_key(lo), None if hi is None else encode_key(hi)
        out: list[tuple] = []
        with _deep():
            self._emit(sub, 0, 0, elo, ehi, out, reader)
        return sub[1], entries, encode_proof(out)

    def _collect(self, ref: bytes, lo: bytes, hi: bytes | None, limit: int | None,
                 entries: list, reader: KVReader | None) -> None:
        elo, ehi = encode_key(lo), None if hi is None else encode_key(hi)
        stack = [ref]
        while stack and (limit is None or len(entries) < limit):
            n = self._node(stack.pop(), reader)
            if n[0] == "L":
                if lo <= n[1] and (hi is None or n[1] < hi):
                    entries.append((n[1], n[2]))
                continue
            _, bit, wref, lref, _, rref, _, _ = n
            head = top_bits(self._node(wref, reader)[3], bit)
            if not outside((head << 1) | 1, bit + 1, elo, ehi):
                stack.append(rref)
            if not outside(head << 1, bit + 1, elo, ehi):
                stack.append(lref)

    def _emit(self, sub: tuple[bytes, bytes], prefix: int, nbits: int, elo: bytes,
              ehi: bytes | None, out: list, reader: KVReader | None) -> None:
        """Pre-order proof nodes of `sub` whose keys start with the nbits `prefix`."""
        if outside(prefix, nbits, elo, ehi):
            out.append((PRUNED, sub[1]))
            return
        n = self._node(sub[0], reader)
        if n[0] == "L":
            out.append((LEAF, n[1], value_hash(n[2])))
            return
        _, bit, wref, lref, lh, rref, rh, _ = n
        head = top_bits(self._node(wref, reader)[3], bit)
        out.append((INTERNAL, bit))
        mark = len(out)
        self._emit((lref, lh), head << 1, bit + 1, elo, ehi, out, reader)
        left_pruned = len(out) == mark + 1 and out[mark][0] == PRUNED
        mark2 = len(out)
        self._emit((rref, rh), (head << 1) | 1, bit + 1, elo, ehi, out, reader)
        if left_pruned and len(out) == mark2 + 1 and out[mark2][0] == PRUNED:
            # the verifier learns a node's prefix from a revealed leaf below it: show one
            del out[mark:]
            self._leftmost((lref, lh), out, reader)
            out.append((PRUNED, rh))

    def _leftmost(self, sub: tuple[bytes, bytes], out: list, reader: KVReader | None) -> None:
        """The path to the subtree's first leaf, every right sibling pruned."""
        rights = []
        while True:
            n = self._node(sub[0], reader)
            if n[0] == "L":
                out.append((LEAF, n[1], value_hash(n[2])))
                break
            out.append((INTERNAL, n[1]))
            rights.append(n[6])
            sub = (n[3], n[4])
        out.extend((PRUNED, h) for h in reversed(rights))
