"""`python -m testnet bench-storage --merkle [--keys N] [--blocks B] [--puts P]`: what the
authenticated state tree costs, per candidate structure.

Candidates (both run by storage.merkle_tree.AuthTree on a real LevelDB in a tmp dir):
  ordered   the crit-bit Merkle Patricia trie over the ledger keys themselves (the one used)
  hashed    the same trie over sha256(key): a compressed sparse Merkle tree, Jellyfish-style
            (balanced by hashing; cannot prove a range complete)
For each: build over N keys shaped like a node's (app KV keys and their history,
executed-seqs records per client), then B blocks of P puts (a quarter new keys), each block
one LevelDB batch; then membership proofs of 200 present keys, absence proofs of 200 absent keys and
(ordered only) range proofs of 100 consecutive keys. Reports CPU per block and per put, tree
bytes written per put, depth, proof bytes and prove / verify times. Then the nested-key attack
against the depth bound (`bench_deep`), `bench-storage`'s commits of 100-tx blocks with the
tree off and on, alternated (--seconds each), and the executor's execute + commit of 200-tx
blocks through the real application, off and on, alternated (`bench_execution`).
Imports: stdlib, storage; bftnode (lazily, for `bench_execution`).
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import tempfile
import time

from storage import keys
from storage.leveldb import _PlyvelKV
from storage.merkle_proof import (
    INTERNAL,
    decode_proof,
    successor,
    verify_absence,
    verify_membership,
    verify_range,
)
from storage.merkle_tree import AuthTree


def _key(rnd: random.Random, i: int) -> bytes:
    r = i % 10
    if r < 4:
        return keys.state(b"k/user/%08d" % rnd.randrange(10**8))
    if r < 9:
        return keys.state(b"h/user/%08d\x00\x00" % rnd.randrange(10**8) + keys.u64(i))
    return keys.client_seqs(hashlib.sha256(b"c%d" % i).digest())


def _open_kv(path: str) -> _PlyvelKV:
    import plyvel

    dbs = [plyvel.DB(os.path.join(path, sub), create_if_missing=True)
           for sub in ("main", "bodies", "records")]
    return _PlyvelKV(*dbs, fsync=False)


def _internal_count(proof: bytes) -> int:
    return sum(1 for n in decode_proof(proof) if n[0] == INTERNAL)


def bench_candidate(name: str, nkeys: int, blocks: int, puts: int, seed: int = 7) -> dict:
    hashed = name == "hashed"

    def tk(k: bytes) -> bytes:
        return hashlib.sha256(k).digest() if hashed else k

    rnd = random.Random(seed)
    base = {_key(rnd, i): os.urandom(24) for i in range(nkeys)}
    with tempfile.TemporaryDirectory(prefix="bench-merkle-") as d:
        kv = _open_kv(d)
        try:
            tree = AuthTree(kv, retain=100)
            t0 = time.process_time()
            root = tree.build(0, ((tk(k), v) for k, v in base.items()))
            ops = tree.take_ops()
            kv.write(ops, sync=False)
            tree.landed()
            build_s = time.process_time() - t0
            present = list(base)
            cpu, wall, nbytes, nops = [], [], 0, 0
            for v in range(1, blocks + 1):
                ch = {}
                for j in range(puts):
                    k = _key(rnd, nkeys + v * puts + j) if j % 4 == 0 else rnd.choice(present)
                    ch[tk(k)] = os.urandom(24)
                    base[k] = ch[tk(k)]
                c0, w0 = time.process_time(), time.perf_counter()
                root = tree.update(v, root, ch)
                ops = tree.take_ops() + tree.prune_ops(v, kv)
                kv.write(ops, sync=False)
                tree.landed()
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                nbytes += sum(len(a) + len(b or b"") for a, b in ops)
                nops += len(ops)
            present = list(base)
            sample = rnd.sample(present, 200)
            tree.forget()  # proofs read nodes from LevelDB, as a read worker would
            msize, mprove, mverify = [], [], []
            for k in sample:
                p0 = time.perf_counter()
                rh, entries, proof = tree.prove(blocks, tk(k), successor(tk(k)))
                p1 = time.perf_counter()
                verify_membership(rh, tk(k), entries[0][1], proof)
                p2 = time.perf_counter()
                msize.append(len(proof))
                mprove.append(p1 - p0)
                mverify.append(p2 - p1)
            asize = []
            for i in range(200):
                k = tk(_key(rnd, 10**9 + i))
                rh, _, proof = tree.prove(blocks, k, successor(k))
                verify_absence(rh, k, proof)
                asize.append(len(proof))
            depth = [_internal_count(tree.prove(blocks, tk(k), successor(tk(k)))[2])
                     for k in sample[:50]]
            out = {
                "candidate": name, "keys": len(base), "puts_per_block": puts,
                "build_s": round(build_s, 2),
                "cpu_ms_per_block": round(statistics.median(cpu) * 1e3, 1),
                "cpu_us_per_put": round(statistics.median(cpu) / puts * 1e6, 1),
                "wall_ms_per_block": round(statistics.median(wall) * 1e3, 1),
                "tree_ops_per_put": round(nops / blocks / puts, 1),
                "tree_bytes_per_put": round(nbytes / blocks / puts),
                "depth_median": statistics.median(depth), "depth_max": max(depth),
                "member_proof_bytes": round(statistics.mean(msize)),
                "absent_proof_bytes": round(statistics.mean(asize)),
                "prove_us": round(statistics.median(mprove) * 1e6),
                "verify_us": round(statistics.median(mverify) * 1e6),
            }
            if not hashed:
                rsize, rverify = [], []
                ordered = sorted(base)
                for _ in range(20):
                    i = rnd.randrange(len(ordered) - 100)
                    lo, hi = ordered[i], ordered[i + 100]
                    rh, entries, proof = tree.prove(blocks, lo, hi)
                    v0 = time.perf_counter()
                    verify_range(rh, lo, hi, entries, proof)
                    rverify.append(time.perf_counter() - v0)
                    assert len(entries) == 100
                    rsize.append(len(proof))
                out["range100_proof_bytes"] = round(statistics.mean(rsize))
                out["range100_verify_us"] = round(statistics.median(rverify) * 1e6)
            return out
        finally:
            kv.close()


def bench_ledger(authenticated: bool, seconds: float, ntx: int = 100) -> dict:
    """`bench-storage`'s block commits (LevelDBStore, unsynced as nodes run: each tx one state
    write, its tx record, client index and top) with the tree on or off."""
    from storage import LevelDBStore

    from .bench_storage import CHAIN, _bench_size, _Chain

    with tempfile.TemporaryDirectory(prefix="bench-merkle-ledger-") as d:
        store = LevelDBStore(os.path.join(d, "db"), CHAIN, bytes(32), create=True,
                             sync_blocks=False, authenticated_state=authenticated)
        try:
            r = _bench_size(store, _Chain(), ntx, seconds, 100_000)
        finally:
            store.close()
    return {"ledger_commit": "tree on" if authenticated else "tree off", **r}


def bench_deep(nkeys: int = 10_000, per_block: int = 64, seed: int = 7) -> dict:
    """The nested-key attack (app keys x, xx, xxx, ... as k/ records) against the depth bound
    (storage.merkle_depth): each key one tx, `per_block` per block, until refused. Then the
    worst case the bound leaves: an overwrite of the deepest key (its whole path rewritten)
    and the proof of that key."""
    from storage.memory import _MemoryKV
    from storage.merkle_depth import MAX_STATE_DEPTH, DepthGuard

    rnd = random.Random(seed)
    kv = _MemoryKV()
    tree = AuthTree(kv, retain=100)
    root = tree.build(0, ((_key(rnd, i), os.urandom(24)) for i in range(nkeys)))
    kv.write(tree.take_ops(), sync=False)
    tree.landed()
    n, v, refused, attack_cpu = 0, 0, 0, 0.0
    while not refused:
        v += 1
        guard = DepthGuard(tree, v - 1)
        ch: dict[bytes, bytes] = {}
        c0 = time.process_time()
        for _ in range(per_block):
            k = b"k/" + b"x" * (n + 1)
            if guard.admit([k]) is not None:
                refused += 1
                break
            ch[keys.state(k)] = b"v"
            n += 1
        root = tree.update(v, root, ch)
        kv.write(tree.take_ops() + tree.prune_ops(v, kv), sync=False)
        tree.landed()
        attack_cpu += time.process_time() - c0
    deepest = keys.state(b"k/" + b"x" * n)
    v += 1
    c0 = time.process_time()
    root = tree.update(v, root, {deepest: b"w"})
    ops = tree.take_ops()
    cpu = time.process_time() - c0
    kv.write(ops, sync=False)
    tree.landed()
    rh, entries, proof = tree.prove(v, deepest, successor(deepest))
    v0 = time.perf_counter()
    verify_membership(rh, deepest, b"w", proof)
    return {
        "deep_attack": f"x, xx, ... over {nkeys} keys", "max_state_depth": MAX_STATE_DEPTH,
        "nested_keys_admitted": n, "tree_height": tree.height(v),
        "attack_cpu_s": round(attack_cpu, 2),
        "deepest_write_cpu_ms": round(cpu * 1e3, 2),
        "deepest_write_tree_bytes": sum(len(a) + len(b or b"") for a, b in ops),
        "deepest_proof_bytes": len(proof),
        "deepest_verify_ms": round((time.perf_counter() - v0) * 1e3, 2),
    }


def bench_execution(authenticated: bool, seconds: float, ntx: int = 200) -> dict:
    """What a node's executor does per block (bftnode.node.executor.execute_and_commit: the
    real KVApplication over a LevelDBStore, unsynced, then the block's commit; each tx a put of
    a new key from one of 64 clients) with the tree on or off: CPU per tx of the whole process
    (LevelDB's background thread included)."""
    from bftnode.app import KVApplication
    from bftnode.node.executor import execute_and_commit
    from storage import LevelDBStore

    from .bench_storage import CHAIN, _Chain

    with tempfile.TemporaryDirectory(prefix="bench-merkle-exec-") as d:
        store = LevelDBStore(os.path.join(d, "db"), CHAIN, bytes(32), create=True,
                             sync_blocks=False, authenticated_state=authenticated)
        app, chain = KVApplication(), _Chain(app_puts=True)
        cpu, n = 0.0, 0
        try:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                ex = chain.block(ntx).execute  # not timed
                c0 = time.process_time()
                execute_and_commit(store, app, [ex])
                cpu += time.process_time() - c0
                n += ntx
        finally:
            store.close()
    return {"execute_commit": "tree on" if authenticated else "tree off", "txs_per_block": ntx,
            "txs": n, "cpu_us_per_tx": round(cpu / n * 1e6, 1)}


def run_merkle(nkeys: int, blocks: int, puts: int, seconds: float = 3.0) -> list[dict]:
    out = [bench_candidate(c, nkeys, blocks, puts) for c in ("ordered", "hashed")]
    out.append(bench_deep())
    out += [bench_ledger(on, seconds) for on in (False, True, False, True)]  # alternated
    out += [bench_execution(on, seconds) for on in (False, True, False, True)]
    return out
