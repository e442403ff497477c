"""The authenticated state tree (storage.merkle_tree) and its proofs (storage.merkle_proof):
the root is a function of the contents only, every proof verifies, every tampering fails, pages
prove their ranges, and the tree lands in the block's batch or not at all (MemoryStore faults,
real plyvel in tmp dirs)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import CHAIN_ID, GENESIS_HASH, ChainBuilder

from storage import (
    CorruptionError,
    MemoryStore,
    ProofError,
    SimulatedCrash,
    StaleVersion,
    keys,
    open_store,
    verify_absence,
    verify_membership,
    verify_range,
)
from storage.memory import _MemoryKV
from storage.merkle_proof import EMPTY_ROOT, successor
from storage.merkle_tree import AuthTree

# small alphabets make shared prefixes, NULs and 0xFF (the encoding's corner cases) common
KEYS = st.binary(min_size=0, max_size=4).map(lambda b: bytes(x % 3 * 0x7F for x in b) + b"k")
VALUES = st.binary(min_size=0, max_size=3)
BLOCKS = st.lists(st.dictionaries(KEYS, st.none() | VALUES, max_size=12), max_size=6)


def _tree(retain: int = 100) -> tuple[AuthTree, _MemoryKV]:
    kv = _MemoryKV()
    return AuthTree(kv, retain), kv


def _apply(blocks, retain: int = 100):
    """Each dict one version; returns (tree, kv, contents after each version)."""
    t, kv = _tree(retain)
    root, state, states = t.build(0, []), {}, [{}]
    kv.write(t.take_ops(), sync=True)
    for v, ch in enumerate(blocks, start=1):
        root = t.update(v, root, ch)
        kv.write(t.take_ops() + t.prune_ops(v, kv), sync=True)
        t.landed()
        for k, val in ch.items():
            if val is None:
                state.pop(k, None)
            else:
                state[k] = val
        states.append(dict(state))
    return t, kv, states


def _built_root(contents: dict) -> bytes:
    t, _ = _tree()
    t.build(0, contents.items())
    return t.root_hash(0)


def _in(contents: dict, lo: bytes, hi: bytes | None) -> list:
    return sorted((k, v) for k, v in contents.items() if lo <= k and (hi is None or k < hi))


@settings(max_examples=150, deadline=None)
@given(BLOCKS, st.randoms(use_true_random=False))
def test_root_is_a_function_of_the_contents_only(blocks, rnd):
    t, _, states = _apply(blocks)
    last = len(blocks)
    assert t.root_hash(last) == _built_root(states[-1])
    # the same final contents written in another order, in one block
    items = list(states[-1].items())
    rnd.shuffle(items)
    assert _built_root(dict(items)) == t.root_hash(last)
    if states[-1]:
        k = next(iter(states[-1]))
        changed = {**states[-1], k: states[-1][k] + b"!"}
        assert _built_root(changed) != t.root_hash(last)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOCKS, KEYS, st.none() | KEYS, st.integers(1, 4))
def test_range_proofs_verify_and_pages_cover_the_range(blocks, lo, hi, limit):
    if hi is not None and hi <= lo:
        lo, hi = hi, lo + b"\x00" if hi == lo else lo
    t, _, states = _apply(blocks)
    v = len(blocks)
    root, entries, proof = t.prove(v, lo, hi)
    assert entries == _in(states[-1], lo, hi)
    assert verify_range(root, lo, hi, entries, proof) is None
    got, start = [], lo
    while start is not None:
        root, page, proof = t.prove(v, start, hi, limit)
        assert len(page) <= limit
        start = verify_range(root, start, hi, page, proof, limit)
        got += page
    assert got == entries


@settings(max_examples=150, deadline=None)
@given(BLOCKS, KEYS)
def test_membership_and_absence(blocks, key):
    t, _, states = _apply(blocks)
    v, contents = len(blocks), states[-1]
    root, entries, proof = t.prove(v, key, successor(key))
    if key in contents:
        verify_membership(root, key, contents[key], proof)
        with pytest.raises(ProofError):
            verify_membership(root, key, contents[key] + b"x", proof)
        with pytest.raises(ProofError):  # a forged absence of a present key
            verify_absence(root, key, proof)
    else:
        verify_absence(root, key, proof)
        with pytest.raises(ProofError):
            verify_membership(root, key, b"", proof)


@settings(max_examples=200, deadline=None)
@given(BLOCKS.filter(lambda b: any(b)), KEYS, st.none() | KEYS, st.data())
def test_any_tampering_fails(blocks, lo, hi, data):
    if hi is not None and hi <= lo:
        hi = None
    t, _, states = _apply(blocks)
    v = len(blocks)
    root, entries, proof = t.prove(v, lo, hi)
    # a flipped byte anywhere in the proof
    i = data.draw(st.integers(0, len(proof) - 1))
    bad = bytearray(proof)
    bad[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProofError):
        verify_range(root, lo, hi, entries, bytes(bad))
    with pytest.raises(ProofError):  # a truncated proof
        verify_range(root, lo, hi, entries, proof[: data.draw(st.integers(0, len(proof) - 1))])
    with pytest.raises(ProofError):  # another root
        verify_range(bytes(32), lo, hi, entries, proof)
    if entries:
        j = data.draw(st.integers(0, len(entries) - 1))
        with pytest.raises(ProofError):  # a dropped entry
            verify_range(root, lo, hi, entries[:j] + entries[j + 1 :], proof)
        k, val = entries[j]
        with pytest.raises(ProofError):  # an altered value
            verify_range(root, lo, hi, [*entries[:j], (k, val + b"\x01"), *entries[j + 1 :]],
                         proof)
        with pytest.raises(ProofError):  # an invented entry
            verify_range(root, lo, hi, [*entries, (entries[-1][0] + b"z", b"")], proof)
        with pytest.raises(ProofError):  # the range claimed complete with a page's proof
            _, page, pproof = t.prove(v, lo, hi, 1)
            if len(entries) == 1:
                raise ProofError("nothing to cut")
            verify_range(root, lo, hi, page, pproof)


@settings(max_examples=100, deadline=None)
@given(BLOCKS.filter(lambda b: len(b) >= 2))
def test_an_older_version_answer_fails_against_the_newer_root(blocks):
    t, _, states = _apply(blocks)
    v = len(blocks)
    old, new = states[v - 1], states[v]
    for key in set(old) | set(new):
        if old.get(key) == new.get(key):
            continue
        _, entries, proof = t.prove(v - 1, key, successor(key))
        assert t.root_hash(v - 1) != t.root_hash(v)
        with pytest.raises(ProofError):
            verify_range(t.root_hash(v), key, successor(key), entries, proof)


def test_empty_tree_and_stale_versions():
    t, kv, _ = _apply([{b"a": b"1"}, {b"a": None}, {}, {b"b": b"2"}], retain=2)
    assert t.root_hash(3) == EMPTY_ROOT != t.root_hash(4)
    root, entries, proof = t.prove(3, b"", None)
    verify_range(root, b"", None, [], proof)
    with pytest.raises(ProofError):
        verify_range(root, b"", None, [(b"a", b"1")], proof)
    for v in (1, 2):  # retain 2 at version 4: versions 3 and 4 only
        with pytest.raises(StaleVersion):
            t.root(v)
    verify_membership(t.root_hash(4), b"b", b"2", t.prove(4, b"b", b"b\x00")[2])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(KEYS, st.none() | VALUES, max_size=12), min_size=4,
                max_size=10), st.integers(1, 3))
def test_pruning_keeps_every_retained_version_whole(blocks, retain):
    t, kv, states = _apply(blocks, retain)
    last = len(blocks)
    for v in range(last - retain + 1, last + 1):
        _, entries, proof = t.prove(v, b"", None, reader=kv)
        assert entries == _in(states[v], b"", None)
        verify_range(t.root_hash(v), b"", None, entries, proof)
    live_nodes = sum(1 for _ in kv.items(b"An", b"Ao"))
    t2, kv2, _ = _apply([states[-1]], 1)
    assert live_nodes <= retain * (sum(1 for _ in kv2.items(b"An", b"Ao")) + 40)


# ------------------------------------------------------------------ in the ledger


def _covered(store) -> dict:
    return {k: v for p in keys.AUTH_KEYSPACES
            for k, v in store._kv.items(p, keys.prefix_end(p))}


def _blocks(n: int, seed: int = 3):
    cb = ChainBuilder(seed=seed)
    out = []
    for i in range(n):
        writes = tuple((b"k/%d" % ((i * 7 + j) % 11), None if j == 2 else b"v%d" % i)
                       for j in range(3))
        out.append(cb.next_block(ntx=(i % 4), state_writes=writes))
    return out


@pytest.mark.parametrize("engine", ["leveldb", "memory"])
def test_store_roots_cover_state_and_client_records(engine, tmp_path):
    if engine == "leveldb":
        s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True,
                       authenticated_state=True, state_versions=5)
    else:
        s = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True, state_versions=5)
    blocks = _blocks(12)
    roots = []
    s.commit_blocks(blocks[:3])  # a group: one version per block all the same
    for b in blocks[3:]:
        s.commit_block(b)
        roots.append(s.state_root())
        assert s.state_root() == _built_root(_covered(s))
    assert len(set(roots)) == len(roots)  # every block changed the state
    h, root, entries, proof = s.prove(keys.STATE, keys.prefix_end(keys.STATE))
    assert h == 12 and entries == sorted(
        (k, v) for k, v in _covered(s).items() if k[:1] == keys.STATE)
    verify_range(root, keys.STATE, keys.prefix_end(keys.STATE), entries, proof)
    ck = next(k for k in _covered(s) if k[:1] == keys.CLIENT_SEQS)
    _, root, entries, proof = s.prove(ck, successor(ck), height=9)
    verify_membership(root, ck, entries[0][1], proof)
    with pytest.raises(StaleVersion):
        s.prove(ck, successor(ck), height=7)
    if engine == "leveldb":
        s.close()
        s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, False, authenticated_state=True,
                       state_versions=5)
        assert s.state_root() == roots[-1] and s.state_root(10) == roots[-3]
    s.close()


def test_group_and_single_commits_give_the_same_roots():
    a = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True)
    b = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True, state_versions=3)
    blocks = _blocks(9)
    a.commit_blocks(blocks[:5])
    a.commit_blocks(blocks[5:])
    for blk in blocks:
        b.commit_block(blk)
    for h in (7, 8, 9):
        assert a.state_root(h) == b.state_root(h)


def test_tree_is_rebuilt_when_turned_on_for_an_existing_ledger(tmp_path):
    blocks = _blocks(6)
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, create=True)
    s.commit_blocks(blocks)
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, False, authenticated_state=True)
    m = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True)
    for b in blocks:
        m.commit_block(b)
    assert s.state_root() == m.state_root()
    s.close()


@pytest.mark.parametrize("keep", [0, 3, 20, None])
def test_tree_and_block_land_together_or_not_at_all(keep):
    """keep: ops of the block's batch that reach the disk before the crash (None: all)."""
    blocks = _blocks(4)
    s = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True)
    s.commit_blocks(blocks[:2])
    before = s.state_root()
    if keep is not None:
        s.tear_next_write(keep)
    try:
        s.commit_block(blocks[2])
        landed = True
    except SimulatedCrash:
        landed = False
    s.crash(lose_unsynced=False)
    if not landed and keep:  # a torn prefix: recovery refuses it (the header is last)
        with pytest.raises(CorruptionError):
            s.recover()
        return
    s.recover()
    if landed:
        assert s.height() == 3 and s.state_root(3) == _built_root(_covered(s))
    else:
        assert s.height() == 2 and s.state_root() == before
        with pytest.raises(StaleVersion):
            s.state_root(3)
    s.commit_block(blocks[3] if landed else blocks[2])
    ref = MemoryStore(CHAIN_ID, GENESIS_HASH, authenticated_state=True)
    ref.commit_blocks(blocks[: s.height()])
    assert s.state_root() == ref.state_root()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\x00\x00\x00\x00\x05ab\x00\x00k" + bytes(32), b"\x01",
                                 b"\x01\x00\x00\x00\x03", b"\x02" + bytes(32), b"\x03",
                                 b"\x00\x00\x00\x00\x01k" + bytes(32), b"\x07"]), max_size=8)
       .map(b"".join), KEYS, st.none() | KEYS)
def test_garbage_proofs_raise_proof_error_only(proof, lo, hi):
    if hi is not None and hi <= lo:
        hi = None
    with pytest.raises(ProofError):
        verify_range(bytes(32), lo, hi, [], proof)


def test_a_path_deeper_than_the_recursion_limit_updates_and_proves():
    """Keys x, xx, xxx, ... make one path as deep as there are keys (a client can write such
    keys): it must neither crash a replica's commit nor its proofs."""
    import sys

    limit = sys.getrecursionlimit()
    n = limit + 300
    t, kv, states = _apply([{b"x" * i: b"v" for i in range(1, n)}, {b"x" * (n - 1): b"w"}])
    deepest = b"x" * (n - 1)
    root, entries, proof = t.prove(2, deepest, successor(deepest))
    verify_membership(root, deepest, b"w", proof)
    assert root == _built_root(states[-1])
    assert sys.getrecursionlimit() == limit


def test_writes_outside_blocks_reach_the_tree(tmp_path):
    """The two writers of covered keys besides commit_blocks: the fold of legacy window keys
    into client tops at recovery (a legacy ledger opened with the tree for the first time),
    and a state import; the tree follows both."""
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, True, dedup_window=5)
    cb = ChainBuilder()
    for _ in range(4):
        s.commit_block(cb.next_block(3))
    legacy = [(keys.client_top(cid), None) for cid in cb.client_seq]
    legacy += [(keys.client_window(cid, top), keys.u64(1)) for cid, top in cb.client_seq.items()]
    s._kv.write(legacy, sync=True)
    s.close()
    s = open_store(tmp_path / "db", CHAIN_ID, GENESIS_HASH, False, dedup_window=5,
                   authenticated_state=True)
    s.recover()
    assert any(k[:1] == keys.CLIENT_SEQS for k in _covered(s))
    assert s.state_root() == _built_root(_covered(s))
    src = MemoryStore(CHAIN_ID, GENESIS_HASH)
    src_cb = ChainBuilder(seed=5)
    for i in range(7):
        src.commit_block(src_cb.next_block(1, ((b"k/%d" % i, b"v"),)))
    items = [kv for chunk in src.export_state() for kv in chunk.items]
    s.import_state(7, src_cb.prev_hash, items, src.committed_block(7))
    assert s.height() == 7 and s.state_root() == _built_root(_covered(s))
    assert any(k.startswith(keys.state(b"k/")) for k in _covered(s))
    s.close()
