"""`python -m testnet bench-storage [--json]`: LevelDB commit throughput with sync=True.

Owns the storage benchmark only (not a test). For 1, 100 and 1000 txs per block it commits real
blocks (client-signed requests, a signed PRE-PREPARE, 3 signed COMMITs, one state write per tx,
tx index and client window) through `LevelDBStore.commit_block` — one synced batch per block —
and reports committed blocks/s, tx/s and per-commit latency. Block construction is not timed.
It also times `persist()` of a PREPARE+COMMIT vote pair (one synced batch). Run time is bounded
by --seconds per size. Imports: stdlib, consensus, storage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import tempfile
import time

from consensus import (
    Authenticator,
    Commit,
    Execute,
    FastSigner,
    FastVerifier,
    OwnVote,
    Prepare,
    PreparedCert,
    PreparedProof,
    PrePrepare,
    Prune,
    Request,
    StableCheckpoint,
    batch_digest,
    chain_digest,
    request_digest,
    sign_request,
)
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import BlockCommit, LevelDBStore, TxResult

CHAIN = b"bench-storage"
_SIGNERS = [FastSigner.from_seed_int(i) for i in range(4)]
_AUTHS = [
    Authenticator(CHAIN, s, FastVerifier(), [x.public_key for x in _SIGNERS]) for s in _SIGNERS
]
_CLIENTS = [FastSigner.from_seed_int(i, b"bench-client") for i in range(64)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1,100,1000", help="txs per block, comma separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per size")
    parser.add_argument("--max-blocks", type=int, default=2000, help="cap per size")
    parser.add_argument("--dir", default=None, help="where to put the database (default: tmp)")
    parser.add_argument("--mix", type=int, default=0, metavar="BLOCKS",
                        help="instead: replay a backup's write mix for BLOCKS blocks of 100 txs "
                             "and report CPU per tx, LevelDB's background thread apart")
    parser.add_argument("--compression", choices=("snappy", "none"), default="snappy")
    parser.add_argument("--merkle", action="store_true",
                        help="instead: the authenticated state tree's cost per candidate "
                             "(testnet.bench_merkle): --keys, --blocks of --puts")
    parser.add_argument("--keys", type=int, default=100_000, help="--merkle: keys in the tree")
    parser.add_argument("--blocks", type=int, default=20, help="--merkle: blocks to time")
    parser.add_argument("--puts", type=int, default=200, help="--merkle: puts per block")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class _Chain:
    """Signed blocks of txs from 64 clients in turn; `app_puts`: each tx an application put
    of a new key (100-byte value), as the throughput bench sends, instead of raw
    `put key value` bytes (which the application refuses as malformed)."""

    def __init__(self, app_puts: bool = False) -> None:
        self.height, self.prev, self.time_ms = 0, GENESIS_CHAIN_DIGEST, 1_000
        self.seqs = [0] * len(_CLIENTS)
        self.app_puts = app_puts

    def block(self, ntx: int) -> BlockCommit:
        reqs = []
        for i in range(ntx):
            c = (self.height * ntx + i) % len(_CLIENTS)
            self.seqs[c] += 1
            op = b"put key-%08d value-%d" % (self.height * ntx + i, self.height)
            if self.app_puts:
                from bftnode.app import ops

                op = ops.put(op.split()[1], op.ljust(100, b"."))
            reqs.append(sign_request(CHAIN, _CLIENTS[c], Request(b"", self.seqs[c], op)))
        seq, t = self.height + 1, self.time_ms + 1
        d = batch_digest(t, tuple(reqs))
        pp = _AUTHS[0].sign(PrePrepare(0, seq, t, tuple(reqs), d, 0))
        commits = tuple(_AUTHS[i].sign(Commit(0, seq, d, i)) for i in range(3))
        h = chain_digest(self.prev, seq, d)
        ex = Execute(seq, 0, t, tuple(reqs), (), d, self.prev, h, pp, commits)
        results = tuple(
            TxResult(request_digest(r), r.client_id, r.request_seq, seq, i, 0, b"ok")
            for i, r in enumerate(reqs)
        )
        writes = () if self.app_puts else tuple((r.op.split()[1], r.op.split()[2])
                                                for r in reqs)
        self.height, self.prev, self.time_ms = seq, h, t
        return BlockCommit(ex, results, writes)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def _bench_size(store: LevelDBStore, chain: _Chain, ntx: int, seconds: float, cap: int) -> dict:
    lat: list[float] = []
    spent = 0.0
    while spent < seconds and len(lat) < cap:
        b = chain.block(ntx)  # not timed
        t0 = time.perf_counter()
        store.commit_block(b)
        dt = time.perf_counter() - t0
        lat.append(dt)
        spent += dt
    return {
        "txs_per_block": ntx,
        "blocks": len(lat),
        "blocks_per_s": round(len(lat) / spent, 1),
        "tx_per_s": round(len(lat) * ntx / spent, 1),
        "p50_ms": round(1000 * statistics.median(lat), 3),
        "p99_ms": round(1000 * _pct(lat, 0.99), 3),
    }


def _bench_persist(store: LevelDBStore, seconds: float, cap: int) -> dict:
    lat: list[float] = []
    spent, seq = 0.0, 0
    while spent < seconds and len(lat) < cap:
        seq += 1
        d = seq.to_bytes(32, "big")
        recs = [OwnVote(_AUTHS[1].sign(Prepare(1, seq, d, 1))),
                OwnVote(_AUTHS[1].sign(Commit(1, seq, d, 1)))]
        t0 = time.perf_counter()
        store.persist(recs)
        dt = time.perf_counter() - t0
        lat.append(dt)
        spent += dt
    return {
        "batches": len(lat),
        "persist_per_s": round(len(lat) / spent, 1),
        "p50_ms": round(1000 * statistics.median(lat), 3),
        "p99_ms": round(1000 * _pct(lat, 0.99), 3),
    }


def _mix_blocks(n: int, ntx: int = 100) -> list[tuple[BlockCommit, PreparedProof]]:
    """Blocks as a node commits them: 8 clients, one KV put per tx (current record and history
    entry, random keys), the pre-prepare with 3 prepares as the backup's prepared certificate."""
    clients = _CLIENTS[:8]
    seqs = [0] * len(clients)
    prev, t, out = GENESIS_CHAIN_DIGEST, 1_000, []
    for h in range(1, n + 1):
        reqs = []
        for i in range(ntx):
            c = i % len(clients)
            seqs[c] += 1
            key = hashlib.sha256(b"%d/%d" % (h, i)).hexdigest()[:24].encode()
            reqs.append(sign_request(CHAIN, clients[c], Request(b"", seqs[c], b"put " + key)))
        t += 1
        d = batch_digest(t, tuple(reqs))
        pp = _AUTHS[0].sign(PrePrepare(0, h, t, tuple(reqs), d, 0))
        proof = PreparedProof(pp, tuple(_AUTHS[i].sign(Prepare(0, h, d, i)) for i in (1, 2, 3)))
        commits = tuple(_AUTHS[i].sign(Commit(0, h, d, i)) for i in range(3))
        bh = chain_digest(prev, h, d)
        ex = Execute(h, 0, t, tuple(reqs), (), d, prev, bh, pp, commits)
        results = tuple(TxResult(request_digest(r), r.client_id, r.request_seq, h, i, 0, b"ok")
                        for i, r in enumerate(reqs))
        writes = [(b"m/rev", h.to_bytes(8, "big"))]
        for r in reqs:
            key = r.op.split()[1]
            writes += [(b"k/" + key, b"x" * 100), (b"h/" + key + b"\0\0" + h.to_bytes(8, "big"),
                                                   b"y" * 100)]
        out.append((BlockCommit(ex, results, tuple(writes)), proof))
        prev = bh
    return out


def run_mix(blocks: int, where: str | None, compression: str) -> dict:
    """What storage costs a backup per tx: per block a PREPARE with the prepared certificate,
    a COMMIT (synced), the block (unsynced, as nodes run), a checkpoint and prune every 16.
    LevelDB compacts on its own thread: `bg_us_per_tx` is process CPU minus this thread's.
    Replayed ~10x faster than a testnet commits, so compactions pile up differently."""
    work = _mix_blocks(blocks)
    with tempfile.TemporaryDirectory(prefix="bench-storage-", dir=where) as d:
        store = LevelDBStore(os.path.join(d, "db"), CHAIN, bytes(32), create=True,
                             sync_blocks=False, compression=compression)
        r0, w0, m0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), \
            time.thread_time()
        try:
            for bc, proof in work:
                h, dg = bc.execute.seq, bc.execute.digest
                store.persist([OwnVote(_AUTHS[1].sign(Prepare(0, h, dg, 1))), PreparedCert(proof)])
                store.persist([OwnVote(_AUTHS[1].sign(Commit(0, h, dg, 1)))])
                store.commit_blocks([bc])
                if h % 16 == 0:
                    store.persist([StableCheckpoint(h, bc.execute.block_hash, ()), Prune(h)])
            r1, w1, m1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), \
                time.thread_time()
        finally:
            store.close()
        disk = sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(d) for f in fs)
    n = blocks * 100
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"mix_txs": n, "wall_s": round(w1 - w0, 2), "cpu_us_per_tx": round(cpu / n * 1e6, 1),
            "main_us_per_tx": round((m1 - m0) / n * 1e6, 1),
            "bg_us_per_tx": round((cpu - (m1 - m0)) / n * 1e6, 1),
            "disk_bytes_per_tx": round(disk / n), "compression": compression}


def run(args: argparse.Namespace) -> int:
    if args.merkle:
        from .bench_merkle import run_merkle

        for report in run_merkle(args.keys, args.blocks, args.puts, args.seconds):
            print(json.dumps(report) if args.json else
                  " ".join(f"{k}={v}" for k, v in report.items()))
        return 0
    if args.mix:
        report = run_mix(args.mix, args.dir, args.compression)
        print(json.dumps(report) if args.json else
              " ".join(f"{k}={v}" for k, v in report.items()))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-storage-", dir=args.dir) as d:
        store = LevelDBStore(os.path.join(d, "db"), CHAIN, bytes(32), create=True)
        chain = _Chain()
        try:
            results = [_bench_size(store, chain, n, args.seconds, args.max_blocks) for n in sizes]
            votes = _bench_persist(store, min(args.seconds, 2.0), args.max_blocks)
        finally:
            store.close()
    report = {"sync": True, "commit": results, "persist_votes": votes}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{'txs/block':>10} {'blocks':>7} {'blocks/s':>9} {'tx/s':>10} "
              f"{'p50 ms':>8} {'p99 ms':>8}")
        for r in results:
            print(f"{r['txs_per_block']:>10} {r['blocks']:>7} {r['blocks_per_s']:>9} "
                  f"{r['tx_per_s']:>10} {r['p50_ms']:>8} {r['p99_ms']:>8}")
        print(f"persist(PREPARE+COMMIT): {votes['persist_per_s']}/s "
              f"p50 {votes['p50_ms']} ms p99 {votes['p99_ms']} ms")
    return 0
