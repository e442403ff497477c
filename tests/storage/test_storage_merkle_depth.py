"""The state tree's depth bound (storage.merkle_depth): a probe tells exactly how deep a lone
insert goes, the per-block accounting never lets an admitted insert exceed the bound, and a
client writing nested keys (x, xx, xxx, ...) through the real application gets DEPTH_LIMIT
once the path is full, while the other txs of its blocks execute."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import CHAIN_ID, CLIENTS, make_block, make_pre_prepare

from bftnode.app import KVApplication
from bftnode.app import ops as O
from bftnode.app.errors import DEPTH_LIMIT
from bftnode.node.executor import execute_and_commit
from consensus import Request, sign_request
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import MemoryStore, keys, merkle_depth, verify_membership
from storage.memory import _MemoryKV
from storage.merkle_depth import MAX_STATE_DEPTH, DepthGuard
from storage.merkle_proof import encode_key, successor
from storage.merkle_tree import AuthTree

KEYS = st.binary(min_size=0, max_size=5).map(lambda b: bytes(x % 3 * 0x7F for x in b) + b"k")


def _tree(contents) -> tuple[AuthTree, _MemoryKV]:
    kv = _MemoryKV()
    t = AuthTree(kv)
    t.build(0, [(k, b"v") for k in contents])
    kv.write(t.take_ops(), sync=True)
    t.landed()
    return t, kv


def _depths(t: AuthTree, version: int) -> dict[bytes, int]:
    """Every leaf's depth (the root's is 0), walked without recursion."""
    sub = t.root(version)
    out: dict[bytes, int] = {}
    stack = [] if sub is None else [(sub[0], 0)]
    while stack:
        ref, d = stack.pop()
        n = t._node(ref)
        if n[0] == "L":
            out[n[1]] = d
        else:
            stack += [(n[3], d + 1), (n[5], d + 1)]
    return out


def _apply(t: AuthTree, kv: _MemoryKV, version: int, new: list[bytes]) -> None:
    t.update(version, t.root(version - 1), {k: b"v" for k in new})
    kv.write(t.take_ops(), sync=True)
    t.landed()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(KEYS, max_size=25), KEYS)
def test_the_bound_of_a_lone_insert_is_exactly_the_deepest_level_it_makes(contents, key):
    t, kv = _tree(contents)
    bound = DepthGuard(t, 0, prefix=b"").bound(key)
    if key in contents:
        assert bound is None
        return
    before = _depths(t, 0)
    _apply(t, kv, 1, [key])
    after = _depths(t, 1)
    moved = [k for k in after if k != key and after[k] != before[k]]
    assert all(after[k] == before[k] + 1 for k in moved)
    assert bound == max([after[key]] + [after[k] for k in moved])
    assert t.height(1) == max(after.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(KEYS, max_size=20),
       st.lists(st.lists(st.lists(KEYS, min_size=1, max_size=3), max_size=10), max_size=4),
       st.integers(2, 7))
def test_the_guard_admits_exactly_the_txs_that_stay_within_the_bound(contents, blocks, bound):
    """Blocks of txs (each a list of keys) over a tree within `bound`: a tx is admitted iff
    the tree with it (and the txs admitted before it in the block) stays within the bound."""
    _guard_decides_exactly(contents, blocks, bound)


def _guard_decides_exactly(contents, blocks, bound: int) -> None:
    contents = set(contents)
    t, kv = _tree(contents)
    while t.height(0) > bound:  # start from a tree within the bound
        contents.discard(max(contents, key=len))
        t, kv = _tree(contents)
    for v, txs in enumerate(blocks, start=1):
        guard = DepthGuard(t, v - 1, max_depth=bound, prefix=b"")
        admitted: list[bytes] = []
        for tx in txs:
            t2, _ = _tree(contents | set(admitted) | set(tx))
            fits = t2.height(0) <= bound
            assert (guard.admit(tx) is None) == fits, (tx, admitted)
            if fits:
                admitted += tx
        _apply(t, kv, v, admitted)
        contents |= set(admitted)
        assert t.height(v) <= bound


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(KEYS, max_size=20),
       st.lists(st.lists(st.lists(KEYS, min_size=1, max_size=3), max_size=10), max_size=4),
       st.integers(2, 7))
def test_the_fast_path_by_the_height_of_the_blocks_own_keys_decides_as_the_walk(
        contents, blocks, bound):
    """The same property with the fast path's bound (b) used whenever it holds (MIN_SLACK 0):
    height(tree) + height(trie of the block's keys) + 1 <= bound admits without a walk, and
    must never admit a tx the exact walk would refuse."""
    saved = merkle_depth.MIN_SLACK
    merkle_depth.MIN_SLACK = 0
    try:
        _guard_decides_exactly(contents, blocks, bound)
    finally:
        merkle_depth.MIN_SLACK = saved


@settings(max_examples=300, deadline=None)
@given(st.sets(KEYS, max_size=40), st.sets(KEYS, max_size=40))
def test_trie_height_of_a_key_set_and_the_merge_bound(tree_keys, block_keys):
    """`_trie_height` is the stored tree's height over the same keys, and a merged tree is
    never deeper than height(tree) + height(block's keys) + 1 (the fast path's bound (b))."""
    def height(ks):
        return _tree(ks)[0].height(0)

    enc = [encode_key(k) for k in block_keys]
    assert merkle_depth._trie_height(enc) == height(block_keys)
    assert height(tree_keys | block_keys) <= height(tree_keys) + height(block_keys) + 1


def test_a_benign_block_past_the_plain_fast_path_walks_nothing():
    """100 new random keys in a block on a tree of 2,000: height + |S| passes the bound of 80
    but height + height(S) + 1 does not, so no stored node is read."""
    import hashlib

    contents = {hashlib.sha256(b"%d" % i).digest()[:12] for i in range(2000)}
    t, _ = _tree(contents)
    guard = DepthGuard(t, 0, max_depth=80, prefix=b"")
    assert t.height(0) + 100 > 80
    reads = []
    real = t._node
    t._node = lambda ref, reader=None: reads.append(ref) or real(ref, reader)
    for i in range(100):
        assert guard.admit([hashlib.sha256(b"new%d" % i).digest()[:12]]) is None
    assert not guard._slow and not reads


def _request(client, seq: int, op: bytes) -> Request:
    return sign_request(CHAIN_ID, client, Request(b"", seq, op))


def test_nested_keys_stop_at_the_bound_and_replicas_agree():
    """The x, xx, xxx, ... attack through the real application on two stores: the path
    tops out at MAX_STATE_DEPTH, the refusing txs get DEPTH_LIMIT, an honest put in the same
    blocks executes, an overwrite and a delete of a key at the bottom are not refused, and
    both stores reach the same roots."""
    stores = [MemoryStore(authenticated_state=True) for _ in range(2)]
    app = KVApplication()
    attacker, honest = CLIENTS[0], CLIENTS[1]
    prev, seqs, n = GENESIS_CHAIN_DIGEST, {attacker: 0, honest: 0}, 0
    codes: list[int] = []
    honest_codes: list[int] = []

    def run_block(ops: list[tuple[object, bytes]]) -> list[int]:
        nonlocal prev
        reqs = []
        for c, op in ops:
            seqs[c] += 1
            reqs.append(_request(c, seqs[c], op))
        h = stores[0].height() + 1
        block = make_block(make_pre_prepare(0, h, 1000 + h, tuple(reqs)), prev)
        prev = block.execute.block_hash
        outs = [execute_and_commit(s, app, [block.execute]) for s in stores]
        assert outs[0][0][0] == outs[1][0][0]
        assert stores[0].state_root() == stores[1].state_root()
        return [r.code for r in outs[0][0][0]]

    while n < MAX_STATE_DEPTH + 40:  # blocks of 40 nested puts and one honest put
        ops = [(attacker, O.put(b"x" * (n + i + 1), b"v")) for i in range(40)]
        ops.insert(20, (honest, O.put(b"honest/%d" % n, b"v")))
        res = run_block(ops)
        honest_codes.append(res.pop(20))
        codes += res
        n += 40
    assert set(honest_codes) == {0}
    first = codes.index(DEPTH_LIMIT)
    assert codes[:first] == [0] * first and set(codes[first:]) == {DEPTH_LIMIT}
    s = stores[0]
    assert s.auth.height(s.height()) <= MAX_STATE_DEPTH
    deepest = b"x" * first
    # an overwrite and then a delete of the deepest accepted key are never refused
    assert run_block([(attacker, O.put(deepest, b"w"))]) == [0]
    assert run_block([(attacker, O.delete(deepest))]) == [0]
    tk = keys.state(b"k/" + b"x" * (first - 1))
    _, root, entries, proof = s.prove(tk, successor(tk))
    verify_membership(root, tk, entries[0][1], proof)
    assert len(proof) < (MAX_STATE_DEPTH + 80) * 40 + 2 * len(tk)



def test_a_tree_walk_never_lifts_the_recursion_limit_past_what_a_decoder_survives():
    """The limit a walk raises is process-wide, and C decoders recurse on the C stack up to
    it: bytes nested 190,000 deep, decoded untyped in another thread meanwhile, must end in
    RecursionError (with the limit at 200,000 the process died of SIGSEGV)."""
    import sys
    import threading

    import msgspec

    from storage import merkle_tree

    outcome: list[str] = []

    def decode_hostile() -> None:
        for data in (b"\x91" * 190_000 + b"\xc0", b"\x81\xc0" * 190_000 + b"\xc0"):
            try:
                msgspec.msgpack.decode(data)
            except RecursionError:
                outcome.append("refused")

    with merkle_tree._deep():
        assert merkle_tree.DEEP <= sys.getrecursionlimit() <= 5_000
        t = threading.Thread(target=decode_hostile)
        t.start()
        t.join(timeout=30)
    assert outcome == ["refused", "refused"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40))
def test_crit_bit_is_the_first_differing_bit(a, b):
    from storage.merkle_proof import bit_at, crit_bit

    ea, eb = encode_key(a), encode_key(b)
    if a == b:
        return
    c = crit_bit(ea, eb)
    assert all(bit_at(ea, i) == bit_at(eb, i) for i in range(c))
    assert bit_at(ea, c) != bit_at(eb, c)
