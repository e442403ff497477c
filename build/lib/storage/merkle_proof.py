"""Proofs over the authenticated state tree, and their verification: pure code (stdlib +
hashlib, no I/O) that the node (which builds proofs) and the client (which checks them) share.

The tree (storage.merkle_tree) is a binary Merkle Patricia trie over the ORDERED tree keys: a
key is encoded prefix-free and order-preserving (`encode_key`), each internal node splits on
the first bit where its keys differ (crit-bit), leaves hold one key. Its shape is a function of
the key set alone, so the root is a function of the contents alone. Hashes:

    leaf      H(0x00 | u32 len(key) | key | H(value))
    internal  H(0x01 | u32 bit | left | right)          bit: the crit bit (from the key's start)
    empty     H(0x02)

A proof is a pre-order list of the nodes a verifier needs: a revealed node (leaf: key and value
hash; internal: its bit, then its two children) or a pruned one (its hash only). Every proof is
a RANGE proof for [lo, hi): the verifier recomputes the root, then checks that every pruned
subtree lies wholly outside [lo, hi) (its keys share the prefix given by its parent's bit and a
revealed leaf below that parent, so its key interval is known) and that the revealed leaves
inside [lo, hi) are exactly the answer, in order, with matching values. Membership of k and
absence of k are the range [k, k + 0x00). A page cut at `limit` entries proves [lo, last + 0x00).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

_U32 = struct.Struct(">I")
LEAF, INTERNAL, PRUNED, EMPTY = 0, 1, 2, 3
EMPTY_ROOT = hashlib.sha256(b"\x02").digest()
MAX_PROOF_NODES = 1 << 20  # a bound on what a verifier will parse


class ProofError(Exception):
    """A proof does not verify: forged, tampered, incomplete, or for another root."""


def value_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def leaf_hash(key: bytes, vhash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + _U32.pack(len(key)) + key + vhash).digest()


def internal_hash(bit: int, left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + _U32.pack(bit) + left + right).digest()


def encode_key(key: bytes) -> bytes:
    """Prefix-free, order-preserving: NUL doubled as 00 FF, then the terminator 00 00."""
    return key.replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def bit_at(ekey: bytes, n: int) -> int:
    return (ekey[n >> 3] >> (7 - (n & 7))) & 1


def top_bits(ekey: bytes, n: int) -> int:
    """The first n bits of `ekey` padded with zero bits, as an integer."""
    nb = (n + 7) >> 3
    chunk = ekey[:nb]
    if len(chunk) < nb:
        chunk = chunk + bytes(nb - len(chunk))
    return int.from_bytes(chunk, "big") >> (nb * 8 - n)


def crit_bit(a: bytes, b: bytes) -> int:
    """The first bit where two different byte strings differ (neither a prefix of the other
    within the bits compared: encoded keys are prefix-free)."""
    n = min(len(a), len(b))
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")  # in C, not a byte loop
    if not x:
        raise ValueError("one key is a prefix of the other")
    return n * 8 - x.bit_length()


def outside(prefix: int, n: int, elo: bytes, ehi: bytes | None) -> bool:
    """True if every key whose encoding starts with the n-bit `prefix` is < lo or >= hi
    (conservative: a tie means 'may overlap'). Prover and verifier use this same rule."""
    if prefix < top_bits(elo, n):
        return True
    return ehi is not None and prefix > top_bits(ehi, n)


def successor(key: bytes) -> bytes:
    """The smallest key greater than `key`."""
    return key + b"\x00"


# ------------------------------------------------------------------ proof encoding


def encode_proof(nodes: Sequence[tuple]) -> bytes:
    """Nodes in pre-order: (LEAF, key, vhash) | (INTERNAL, bit) | (PRUNED, hash) | (EMPTY,)."""
    out = bytearray()
    for node in nodes:
        tag = node[0]
        out.append(tag)
        if tag == LEAF:
            out += _U32.pack(len(node[1])) + node[1] + node[2]
        elif tag == INTERNAL:
            out += _U32.pack(node[1])
        elif tag == PRUNED:
            out += node[1]
    return bytes(out)


def decode_proof(data: bytes) -> list[tuple]:
    nodes: list[tuple] = []
    i, n = 0, len(data)
    try:
        while i < n:
            if len(nodes) >= MAX_PROOF_NODES:
                raise ProofError("proof has too many nodes")
            tag = data[i]
            i += 1
            if tag == LEAF:
                (kl,) = _U32.unpack_from(data, i)
                i += 4
                key, vh = data[i : i + kl], data[i + kl : i + kl + 32]
                if len(key) != kl or len(vh) != 32:
                    raise ProofError("truncated leaf")
                i += kl + 32
                nodes.append((LEAF, key, vh))
            elif tag == INTERNAL:
                (bit,) = _U32.unpack_from(data, i)
                i += 4
                nodes.append((INTERNAL, bit))
            elif tag == PRUNED:
                h = data[i : i + 32]
                if len(h) != 32:
                    raise ProofError("truncated pruned hash")
                i += 32
                nodes.append((PRUNED, h))
            elif tag == EMPTY:
                nodes.append((EMPTY,))
            else:
                raise ProofError(f"unknown proof node tag {tag}")
    except struct.error:
        raise ProofError("truncated proof") from None
    return nodes


# ------------------------------------------------------------------ verification


class _Tree:
    """A parsed proof node: kind, hash, witness (encoded key of its first revealed leaf)."""

    __slots__ = ("kind", "bit", "key", "vhash", "hash", "left", "right", "witness")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.left = self.right = None
        self.witness: bytes | None = None


def _parse(nodes: list[tuple]) -> _Tree:
    """Pre-order list -> tree (iterative: a deep proof must not hit the recursion limit)."""
    pos = 0

    def new(i: int) -> _Tree:
        raw = nodes[i]
        t = _Tree(raw[0])
        if raw[0] == LEAF:
            t.key, t.vhash = raw[1], raw[2]
            t.witness = encode_key(raw[1])
        elif raw[0] == INTERNAL:
            t.bit = raw[1]
        elif raw[0] == PRUNED:
            t.hash = raw[1]
        else:
            raise ProofError("EMPTY inside a proof")
        return t

    if not nodes:
        raise ProofError("empty proof")
    root = new(0)
    pos = 1
    stack = [root] if root.kind == INTERNAL else []
    while stack:
        top = stack[-1]
        if pos >= len(nodes):
            raise ProofError("truncated proof")
        child = new(pos)
        pos += 1
        if top.left is None:
            top.left = child
        else:
            top.right = child
            stack.pop()
        if child.kind == INTERNAL:
            stack.append(child)
    if pos != len(nodes):
        raise ProofError("trailing proof nodes")
    return root


def _check(root: _Tree, elo: bytes, ehi: bytes | None, lo: bytes, hi: bytes | None
           ) -> list[tuple[bytes, bytes]]:
    """Hashes bottom-up, structure and completeness; returns in-range (key, vhash) in order."""
    order: list[_Tree] = []  # post-order
    stack: list[tuple[_Tree, bool]] = [(root, False)]
    while stack:
        t, done = stack.pop()
        if t.kind != INTERNAL or done:
            order.append(t)
            continue
        stack.append((t, True))
        stack.append((t.right, False))
        stack.append((t.left, False))
    for t in order:
        if t.kind == LEAF:
            t.hash = leaf_hash(t.key, t.vhash)
        elif t.kind == INTERNAL:
            t.hash = internal_hash(t.bit, t.left.hash, t.right.hash)
            t.witness = t.left.witness if t.left.witness is not None else t.right.witness
            if t.witness is None:
                raise ProofError("an expanded node reveals no leaf")
            w, b = t.witness, t.bit
            if len(w) * 8 <= b:
                raise ProofError("crit bit beyond its keys")
            head = top_bits(w, b)
            for side, c in ((0, t.left), (1, t.right)):
                if c.kind == PRUNED:
                    if not outside((head << 1) | side, b + 1, elo, ehi):
                        raise ProofError("a pruned subtree may hold keys of the range")
                    continue
                cw = c.witness
                if c.kind == INTERNAL and c.bit <= b:
                    raise ProofError("crit bits do not increase down the tree")
                if len(cw) * 8 <= b or bit_at(cw, b) != side or top_bits(cw, b) != head:
                    raise ProofError("a leaf sits on the wrong side of its parent")
    if root.kind == PRUNED and not outside(0, 0, elo, ehi):
        raise ProofError("a pruned root may hold keys of the range")
    found = []
    for t in order:  # post-order visits leaves in key order
        if t.kind == LEAF and lo <= t.key and (hi is None or t.key < hi):
            found.append((t.key, t.vhash))
    return found


def verify_range(root_hash: bytes, lo: bytes, hi: bytes | None,
                 entries: Sequence[tuple[bytes, bytes]], proof: bytes,
                 limit: int | None = None) -> bytes | None:
    """Check that `entries` are ALL the (key, value) pairs with lo <= key < hi (hi None:
    unbounded) in the tree of `root_hash`, in key order; if `limit` entries came back (a
    page), only up to the last one. Returns where the next page starts (None: the range is
    done). Raises ProofError."""
    if hi is not None and hi <= lo:
        raise ProofError("empty range")
    nxt = None
    if limit is not None and len(entries) >= limit:
        if len(entries) > limit or not entries:
            raise ProofError("more entries than the limit")
        nxt = successor(entries[-1][0])
        if hi is not None and nxt > hi:
            raise ProofError("page ends beyond the range")
        hi, nxt = nxt, (None if nxt == hi else nxt)
    nodes = decode_proof(proof)
    if nodes and nodes[0][0] == EMPTY:
        if len(nodes) != 1 or root_hash != EMPTY_ROOT:
            raise ProofError("empty-tree proof for a non-empty root")
        if entries:
            raise ProofError("entries claimed in an empty tree")
        return nxt
    tree = _parse(nodes)
    elo = encode_key(lo)
    ehi = None if hi is None else encode_key(hi)
    found = _check(tree, elo, ehi, lo, hi)
    if tree.hash != root_hash:
        raise ProofError("proof does not hash to the root")
    if len(found) != len(entries):
        raise ProofError(f"range holds {len(found)} entries, answer has {len(entries)}")
    for (k, vh), (ek, ev) in zip(found, entries, strict=True):
        if k != ek or vh != value_hash(ev):
            raise ProofError(f"entry {ek!r} does not match the tree")
    return nxt


def verify_membership(root_hash: bytes, key: bytes, value: bytes, proof: bytes) -> None:
    """`key` holds `value` in the tree of `root_hash`; raises ProofError otherwise."""
    verify_range(root_hash, key, successor(key), [(key, value)], proof)


def verify_absence(root_hash: bytes, key: bytes, proof: bytes) -> None:
    """`key` is absent from the tree of `root_hash`; raises ProofError otherwise."""
    verify_range(root_hash, key, successor(key), [], proof)
