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

import hashlib
import struct
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain, islice

from . import keys
from .kv import KVReader, Op
from .merkle_proof import (
    EMPTY,
    EMPTY_ROOT,
    INTERNAL,
    LEAF,
    PRUNED,
    encode_key,
    encode_proof,
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
CACHE_NODES = 100_000  # two generations of at most half each (see AuthTree._cache_put); ~40 MB
# per 100,000: 200,000 gave no measurable throughput (the update writes ~5 nodes per tx)
_LEAF_HDR = struct.Struct(">BI")
_INT = struct.Struct(">BII12s12s32s12s32s")
# bound once for the update's inner loops
_pack_leaf_hdr, _pack_int = _LEAF_HDR.pack, _INT.pack
# internal_hash's input (0x01 | u32 bit | left | right) in one call: hashes are 32 bytes
_pack_int_hash = struct.Struct(">BI32s32s").pack
_pack_u32 = struct.Struct(">I").pack
_sha256 = hashlib.sha256
_BYTE = [bytes((i,)) for i in range(256)]
# Recursion limit while walking the tree (see _deep). Walks recurse once per level, at most
# merkle_depth.MAX_STATE_DEPTH (256). The limit is process-wide and C decoders (msgspec)
# recurse on the C stack up to it, so it must stay where a hostile nested frame decoded in
# another thread still ends in RecursionError, not a segfault (5,000 measured safe on 8 MB
# thread stacks; 200,000 is not).
DEEP = 3_000

# (ref, hash) of a subtree; None = empty
Sub = tuple[bytes, bytes] | None
# (ref, hash, first leaf's ref, height) of a node made by the update being built
Info = tuple[bytes, bytes, bytes, int]
Built = Info | tuple[bytes, bytes] | None  # an update's result: new, existing, or empty
Change = tuple[bytes, bytes, bytes | None]  # (encoded key, key, value or None to delete)


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


def _span(head: bytes, pb: int, r: int) -> tuple[bytes, bytes | None]:
    """[start, end) of the byte strings that begin with the bytes `head` then the top r bits
    of the byte pb (end None: no bound)."""
    if r:
        top = pb >> (8 - r)
        start = head + _BYTE[top << (8 - r)]
        if top + 1 < 1 << r:
            return start, head + _BYTE[(top + 1) << (8 - r)]
    else:
        start = head
    rest = head.rstrip(b"\xff")  # the bits end in ones: carry into the last byte below 0xff
    return start, (rest[:-1] + _BYTE[rest[-1] + 1] if rest else None)


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
        self._dels = False  # the changes being applied hold deletes

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
        ch = sorted([(encode_key(k), k, v) for k, v in changes.items()])
        self._dels = None in changes.values()
        self._replaced = []
        with _deep():
            new = self._upd(prev, ch, 0, len(ch)) if ch else prev
        if new is not None and len(new) == 4:
            new = new[:2]
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

    def _upd(self, sub: Sub, ch: list[Change], lo: int, hi: int) -> Built:
        """`sub` (an existing node, or None) with the changes ch[lo:hi] applied: None, `sub`
        itself if nothing changed, (ref, hash) of another existing node, or the Info of a
        new one. Nodes are made and marked stale in the order of a plain recursive merge:
        their refs and the stale record depend on it."""
        if sub is None:
            return self._build(ch, lo, hi)
        ref = sub[0]
        # _node, with its common hits inlined (self._cache is not kept in a local: a read may
        # age the cache, replacing that dict)
        pending = self.pending
        n = pending.get(ref) or self._cache.get(ref) or self._node(ref)
        if n[0] == "L":
            return self._upd_leaf(sub, n, ch, lo, hi)
        _, bit, wref, lref, lh, rref, rh, _ = n
        prefix = (pending.get(wref) or self._cache.get(wref) or self._node(wref))[3]
        nb, r = bit >> 3, bit & 7
        head, pb = prefix[:nb], prefix[nb]
        first, last = ch[lo][0], ch[hi - 1][0]
        # sorted: if the first and last change share the node's prefix (its first `bit` bits),
        # all do; else the ones that do are a run, found by bisecting for its bounds
        if (first.startswith(head) and last.startswith(head)
                and (first[nb] ^ pb) >> (8 - r) == 0 and (last[nb] ^ pb) >> (8 - r) == 0):
            a, b = lo, hi
        else:
            start, end = _span(head, pb, r)
            a = bisect_left(ch, (start,), lo, hi)
            b = hi if end is None else bisect_left(ch, (end,), a, hi)
        if a < b:
            if b - a == 1:  # one change: its bit picks the side
                i = a if (ch[a][0][nb] >> (7 - r)) & 1 else b
            else:  # the first change with a 1 at `bit`: sorts from the prefix, a 1, zeros
                i = bisect_left(ch, (head + _BYTE[(pb >> (7 - r) | 1) << (7 - r)],), a, b)
            lsub, rsub = (lref, lh), (rref, rh)
            left = self._upd(lsub, ch, a, i) if a < i else lsub
            right = self._upd(rsub, ch, i, b) if i < b else rsub
            if left is not lsub or right is not rsub:
                self._replaced.append(ref)
                if left is None or right is None:
                    sub = left if right is None else right
                else:
                    sub = self._internal(bit, left if len(left) == 4 else self._info(left),
                                         right if len(right) == 4 else self._info(right))
        if a == lo and b == hi or self._dels and not self._has_put(ch, lo, a, b, hi):
            return sub
        # changes outside the prefix: a new subtree over them and `sub`, kept whole
        items = ch[lo:a]
        if sub is not None:
            items.append(self._item(sub))
        items += ch[b:hi]
        return self._build(items, 0, len(items))

    def _upd_leaf(self, sub: tuple[bytes, bytes], n: tuple, ch: list[Change], lo: int,
                  hi: int) -> Built:
        """_upd of a leaf `n`: kept whole unless its own key changes, the others around it."""
        ekey, value = n[3], n[2]
        i = bisect_left(ch, (ekey,), lo, hi)
        hit = i < hi and ch[i][0] == ekey
        if hit and ch[i][2] != value:  # the leaf's own key is changed: replace the leaf
            self._replaced.append(sub[0])
            return self._build(ch, lo, hi)
        if hi - lo == hit or self._dels and not self._has_put(ch, lo, i, i + hit, hi):
            return sub
        items = ch[lo:i]
        items.append((ekey, None, (sub[0], sub[1], sub[0], 0)))
        items += ch[i + hit : hi]
        return self._build(items, 0, len(items))

    def _has_put(self, ch: list[Change], lo: int, a: int, b: int, hi: int) -> bool:
        """ch[lo:a] or ch[b:hi] sets a key (deletes of absent keys make no node)."""
        return any(ch[j][2] is not None for j in chain(range(lo, a), range(b, hi)))

    def _info(self, sub: tuple) -> Info:
        """Info of a subtree: read for an existing node (a 2-tuple), as is for a new one."""
        if len(sub) == 4:
            return sub
        ref = sub[0]
        n = self.pending.get(ref) or self._cache.get(ref) or self._node(ref)
        return (ref, sub[1], ref, 0) if n[0] == "L" else (ref, sub[1], n[2], n[7])

    def _item(self, sub: tuple) -> tuple[bytes, None, Info]:
        """The build item of a subtree kept whole (read as the recursive merge read it)."""
        if len(sub) == 4:
            return self._node(sub[2])[3], None, sub
        ref, h = sub
        n = self._node(ref)
        if n[0] == "L":
            return n[3], None, (ref, h, ref, 0)
        return self._node(n[2])[3], None, (ref, h, n[2], n[7])

    def _internal(self, bit: int, left: Info, right: Info) -> Info:
        """A new internal node over two subtrees (_build has this inlined)."""
        lref, lh, wref, lheight = left
        rref, rh, _, rheight = right
        height = 1 + (lheight if lheight > rheight else rheight)
        ref = self._vref + _pack_u32(self._idx)
        self._idx += 1
        self.pending[ref] = ("I", bit, wref, lref, lh, rref, rh, height)
        self._ops.append((NODE + ref, _pack_int(INTERNAL, bit, height, wref, lref, lh, rref, rh)))
        return ref, _sha256(_pack_int_hash(INTERNAL, bit, lh, rh)).digest(), wref, height

    def _build(self, items: list, lo: int, hi: int) -> Info | None:
        """The subtree over sorted items[lo:hi]: (ekey, key, value) a new leaf (value None: a
        delete, skipped), or (its first leaf's ekey, None, Info) an existing subtree kept whole.

        One pass with a stack instead of recursive splits: the bit a range splits on is the
        least crit bit of neighbours in it, so a node is due once the gap after its right
        subtree has a lower crit bit. Nodes come out in post-order, as the recursive split
        made them (so their refs are the same)."""
        if self._dels:
            items = [it for it in islice(items, lo, hi) if it[2] is not None]
            lo, hi = 0, len(items)
        if lo >= hi:
            return None
        pending, ops, vref, idx = self.pending, self._ops, self._vref, self._idx
        stack: list[tuple[int, Info]] = []  # (bit, left subtree) of nodes awaiting a right one
        e = items[lo][0]
        ie, le = int.from_bytes(e, "big"), len(e)
        for j in range(lo, hi):
            e, k, v = items[j]
            if k is None:  # read once more, as joining it to its parent did
                self._node(v[0])
                cur = v
            else:
                hk = _pack_leaf_hdr(LEAF, len(k)) + k  # starts the record and (LEAF is 0) the hash
                ref = vref + _pack_u32(idx)
                idx += 1
                pending[ref] = ("L", k, v, e)
                ops.append((NODE + ref, hk + v))
                cur = (ref, _sha256(hk + _sha256(v).digest()).digest(), ref, 0)
            if j + 1 < hi:  # the crit bit of this item and the next, on ints of the ekeys
                e = items[j + 1][0]
                pe, pl, ie, le = ie, le, int.from_bytes(e, "big"), len(e)
                if le == pl:
                    c = le * 8 - (ie ^ pe).bit_length()
                elif le < pl:
                    c = le * 8 - (ie ^ (pe >> 8 * (pl - le))).bit_length()
                else:
                    c = pl * 8 - ((ie >> 8 * (le - pl)) ^ pe).bit_length()
            else:
                c = -1
            while stack and stack[-1][0] > c:  # _internal, inlined (hot)
                bit, (lref, lh, wref, lheight) = stack.pop()
                rref, rh, _, height = cur
                height = 1 + (lheight if lheight > height else height)
                ref = vref + _pack_u32(idx)
                idx += 1
                pending[ref] = ("I", bit, wref, lref, lh, rref, rh, height)
                rec = _pack_int(INTERNAL, bit, height, wref, lref, lh, rref, rh)
                ops.append((NODE + ref, rec))
                cur = (ref, _sha256(_pack_int_hash(INTERNAL, bit, lh, rh)).digest(), wref, height)
            stack.append((c, cur))
        self._idx = idx
        return cur

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
