"""Small stand-ins used ONLY until the real parts land: a toy ordering replica (no fault
tolerance: replica 0 orders, everyone executes) and a dict-backed Store. The tests prefer the
real `consensus.Replica` / `storage.open_store` whenever they are importable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from consensus import (
    ClientRequest,
    CommittedBlock,
    Duplicate,
    Execute,
    Forward,
    Output,
    OwnVote,
    PrePrepare,
    Receive,
    RecoveredState,
    Rejected,
    Send,
    Tick,
    batch_digest,
    chain_digest,
)
from storage.interface import BlockCommit, StorageError, StoredBlock, TxResult


class ToyReplica:
    """Replica 0 batches requests into PrePrepares; every replica executes them in order."""

    def __init__(self, config, replica_id, auth, restored=None):
        r = restored or RecoveredState()
        self.config, self.id, self.auth = config, replica_id, auth
        self.view, self.in_view_change, self.stable_seq = 0, False, 0
        self.last_executed, self.last_block_hash, self.last_time = (
            r.last_executed, r.last_block_hash, r.last_time_ms)
        self.next_seq = r.last_executed + 1
        self.pending: list = []
        self.executed = {(c, s) for c, seqs in r.client_executed.items() for s in seqs}
        self.buffer: dict[int, PrePrepare] = {}
        self.now = 0

    @property
    def primary(self):
        return 0

    def step(self, event) -> Output:
        out = Output()
        if isinstance(event, Tick):
            self.now = max(self.now, event.now_ms)
        elif isinstance(event, ClientRequest):
            req = event.request
            if not self.auth.verify_request(req):
                out.reply.append(Rejected(req, "bad signature"))
            elif (req.client_id, req.request_seq) in self.executed:
                out.reply.append(Duplicate(req.client_id, req.request_seq))
            elif self.id == 0:
                self.pending.append(req)
            else:
                out.send.append(Send(0, self.auth.sign(Forward((req,), self.id))))
        elif isinstance(event, Receive) and isinstance(event.message, Forward):
            if self.id == 0:
                self.pending.extend(event.message.requests)
        elif isinstance(event, Receive) and isinstance(event.message, PrePrepare):
            if event.sender == 0 and self.auth.verify(event.message):
                self.buffer[event.message.seq] = event.message
        if self.id == 0 and self.pending:
            t = max(self.now, self.last_time + 1)
            reqs = tuple(self.pending[: self.config.batch_max])
            del self.pending[: self.config.batch_max]
            pp = self.auth.sign(PrePrepare(0, self.next_seq, t, reqs, batch_digest(t, reqs), 0))
            self.next_seq += 1
            out.persist.append(OwnVote(pp))
            out.send.append(Send(None, pp))
            self.buffer[pp.seq] = pp
        while self.last_executed + 1 in self.buffer:
            pp = self.buffer.pop(self.last_executed + 1)
            todo, skipped = [], []
            for q in pp.requests:
                if (q.client_id, q.request_seq) in self.executed:
                    skipped.append((q, "duplicate"))
                else:
                    self.executed.add((q.client_id, q.request_seq))
                    todo.append(q)
            t = max(self.last_time + 1, pp.time_ms)
            h = chain_digest(self.last_block_hash, pp.seq, pp.digest)
            out.execute.append(Execute(pp.seq, 0, t, tuple(todo), tuple(skipped), pp.digest,
                                       self.last_block_hash, h, pp, ()))
            self.last_executed, self.last_block_hash, self.last_time = pp.seq, h, t
        out.next_deadline_ms = self.now + 50
        return out


class DictStore:
    def __init__(self):
        self.records: list = []
        self.blocks: dict[int, StoredBlock] = {}
        self.txs: dict[bytes, TxResult] = {}
        self.by_client: dict[tuple[bytes, int], bytes] = {}
        self.kv: dict[bytes, bytes] = {}
        self.closed = False

    def persist(self, records):
        self.records.extend(records)

    def commit_block(self, commit: BlockCommit):
        ex = commit.execute
        if ex.seq != self.height() + 1:
            raise StorageError(f"height {ex.seq} after {self.height()}")
        self.blocks[ex.seq] = StoredBlock(
            ex.seq, ex.block_hash, ex.prev_hash, ex.digest, ex.time_ms, ex.view, bytes(32),
            ex.requests, CommittedBlock(ex.pre_prepare, ex.commits))
        for tr in commit.results:
            self.txs[tr.tx_hash] = tr
            self.by_client[(tr.client_id, tr.request_seq)] = tr.tx_hash
        for k, v in commit.state_writes:
            if v is None:
                self.kv.pop(k, None)
            else:
                self.kv[k] = v

    def recover(self):
        h = self.height()
        b = self.blocks.get(h)
        clients: dict[bytes, tuple[int, ...]] = {}
        for c, s in self.by_client:
            clients[c] = (*clients.get(c, ()), s)
        return RecoveredState(last_executed=h, last_block_hash=b.hash if b else bytes(32),
                              last_time_ms=b.time_ms if b else 0, client_executed=clients)

    def height(self):
        return max(self.blocks, default=0)

    def block(self, h):
        return self.blocks.get(h)

    def committed_block(self, h):
        b = self.blocks.get(h)
        return b.committed if b else None

    def tx(self, h):
        return self.txs.get(h)

    def tx_by_client(self, c, s):
        h = self.by_client.get((c, s))
        return self.txs.get(h) if h else None

    def state(self):
        return _Reader(self.kv)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[_Reader]:
        yield _Reader(dict(self.kv))

    def close(self):
        self.closed = True


class _Reader:
    def __init__(self, kv):
        self.kv = kv

    def get(self, key):
        return self.kv.get(key)

    def iterate(self, prefix, start=None, reverse=False):
        keys = sorted(k for k in self.kv if k.startswith(prefix) and (start is None or k >= start))
        for k in reversed(keys) if reverse else keys:
            yield k, self.kv[k]
