"""Builders of real-looking blocks for storage tests: signed requests, a signed PRE-PREPARE,
2f+1 signed COMMITs (FastSigner), chained hashes, tx results and state writes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from consensus import (
    Authenticator,
    Commit,
    Execute,
    FastSigner,
    FastVerifier,
    PrePrepare,
    Request,
    batch_digest,
    chain_digest,
    request_digest,
    sign_request,
)
from consensus.codec import GENESIS_CHAIN_DIGEST
from storage import BlockCommit, TxResult

CHAIN_ID = b"storage-test"
GENESIS_HASH = bytes(range(32))
N = 4
REPLICA_SIGNERS = [FastSigner.from_seed_int(i) for i in range(N)]
REPLICA_KEYS = [s.public_key for s in REPLICA_SIGNERS]
AUTHS = [Authenticator(CHAIN_ID, s, FastVerifier(), REPLICA_KEYS) for s in REPLICA_SIGNERS]
CLIENTS = [FastSigner.from_seed_int(i, b"client") for i in range(3)]


def make_pre_prepare(view: int, seq: int, time_ms: int, reqs: tuple[Request, ...]) -> PrePrepare:
    d = batch_digest(time_ms, reqs)
    return AUTHS[view % N].sign(PrePrepare(view, seq, time_ms, reqs, d, view % N))


def make_block(
    pp: PrePrepare, prev_hash: bytes, state_writes: tuple[tuple[bytes, bytes | None], ...] = ()
) -> BlockCommit:
    """The BlockCommit a node would write after executing `pp` (all requests executed)."""
    commits = tuple(AUTHS[i].sign(Commit(pp.view, pp.seq, pp.digest, i)) for i in range(3))
    ex = Execute(
        seq=pp.seq,
        view=pp.view,
        time_ms=pp.time_ms,
        requests=pp.requests,
        skipped=(),
        digest=pp.digest,
        prev_hash=prev_hash,
        block_hash=chain_digest(prev_hash, pp.seq, pp.digest),
        pre_prepare=pp,
        commits=commits,
    )
    results = tuple(
        TxResult(request_digest(r), r.client_id, r.request_seq, pp.seq, i, i % 2, b"r%d" % i)
        for i, r in enumerate(pp.requests)
    )
    return BlockCommit(ex, results, state_writes, state_root=bytes(32))


@dataclass
class ChainBuilder:
    """Generates the next valid block on top of the store's tip."""

    seed: int = 0
    height: int = 0
    prev_hash: bytes = GENESIS_CHAIN_DIGEST
    time_ms: int = 1_000
    view: int = 0
    client_seq: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def requests(self, n: int) -> tuple[Request, ...]:
        out = []
        for _ in range(n):
            c = self.rng.choice(CLIENTS)
            seq = self.client_seq.get(c.public_key, 0) + 1
            self.client_seq[c.public_key] = seq
            op = b"put k%d v%d" % (self.rng.randrange(50), self.rng.randrange(1 << 30))
            out.append(sign_request(CHAIN_ID, c, Request(b"", seq, op)))
        return tuple(out)

    def next_pre_prepare(self, ntx: int) -> PrePrepare:
        t = self.time_ms + self.rng.randint(1, 50)
        return make_pre_prepare(self.view, self.height + 1, t, self.requests(ntx))

    def accept(self, block: BlockCommit) -> None:
        ex = block.execute
        self.height, self.prev_hash, self.time_ms = ex.seq, ex.block_hash, ex.time_ms

    def next_block(
        self, ntx: int = 3, state_writes: tuple[tuple[bytes, bytes | None], ...] = ()
    ) -> BlockCommit:
        b = make_block(self.next_pre_prepare(ntx), self.prev_hash, state_writes)
        self.accept(b)
        return b


def open_engine(engine: str, path, **kw):
    """A fresh store on `engine`: "leveldb" (real plyvel at `path`) or "memory"."""
    from storage import MemoryStore, open_store

    if engine == "leveldb":
        return open_store(path, CHAIN_ID, GENESIS_HASH, create=True, **kw)
    return MemoryStore(CHAIN_ID, GENESIS_HASH, **kw)
