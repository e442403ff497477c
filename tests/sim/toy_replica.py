"""A deliberately tiny PBFT normal case (view 0 only, no view change, no checkpoints).

Test fixture for the simulator's own mechanics: event scheduling, the shell's output order,
the checkers and the Byzantine wrappers, independently of the real `consensus.Replica`.
It speaks the real messages and the real `Replica.step` API.
"""

from __future__ import annotations

from consensus import (
    Authenticator,
    ClientRequest,
    Commit,
    Config,
    Execute,
    Forward,
    Output,
    OwnVote,
    Prepare,
    PrePrepare,
    Receive,
    Send,
    Tick,
    batch_digest,
    chain_digest,
)
from consensus.codec import GENESIS_CHAIN_DIGEST


class ToyReplica:
    def __init__(self, config: Config, replica_id: int, auth: Authenticator, restored=None):
        self.config = config
        self.replica_id = replica_id
        self.auth = auth
        self.view = 0
        self.in_view_change = False
        self.primary = 0
        self.stable_seq = 0
        self.now = 0
        self.pending: list = []
        self.pending_keys: set = set()
        self.next_seq = 1
        self.pps: dict[int, PrePrepare] = {}
        self.prepares: dict[int, dict[int, bytes]] = {}
        self.commits: dict[int, dict[int, Commit]] = {}
        self.sent_commit: set[int] = set()
        self.last_executed = 0
        self.last_block_hash = GENESIS_CHAIN_DIGEST
        self.last_time = 0
        self.executed: set = set()
        if restored is not None:
            self.last_executed = restored.last_executed
            self.next_seq = restored.last_executed + 1
            self.last_block_hash = restored.last_block_hash
            self.last_time = restored.last_time_ms
            for cid, seqs in restored.client_executed.items():
                self.executed.update((cid, s) for s in seqs)
            for v in restored.own_votes:
                if isinstance(v, PrePrepare):
                    self.next_seq = max(self.next_seq, v.seq + 1)

    def _vote(self, out: Output, msg) -> None:
        msg = self.auth.sign(msg)
        out.persist.append(OwnVote(msg))
        out.send.append(Send(None, msg))
        return msg

    def step(self, event) -> Output:
        out = Output()
        if isinstance(event, Tick):
            self.now = event.now_ms
            if self.replica_id == self.primary and self.pending:
                batch = tuple(self.pending[: self.config.batch_max])
                self.pending = self.pending[len(batch):]
                t = max(self.now, self.last_time + 1)
                pp = self._vote(out, PrePrepare(0, self.next_seq, t, batch,
                                                batch_digest(t, batch), self.replica_id))
                self.next_seq += 1
                self._on_pre_prepare(out, pp)
            out.next_deadline_ms = self.now + 5
        elif isinstance(event, ClientRequest):
            self._on_request(out, (event.request,))
        elif isinstance(event, Receive):
            m = event.message
            if isinstance(m, Forward):
                self._on_request(out, m.requests)
            elif not self.auth.verify(m):
                pass
            elif isinstance(m, PrePrepare) and m.replica == self.primary:
                if m.seq not in self.pps and m.digest == batch_digest(m.time_ms, m.requests):
                    self._on_pre_prepare(out, m)
            elif isinstance(m, Prepare):
                self.prepares.setdefault(m.seq, {}).setdefault(m.replica, m.digest)
                self._progress(out, m.seq)
            elif isinstance(m, Commit):
                self.commits.setdefault(m.seq, {}).setdefault(m.replica, m)
                self._progress(out, m.seq)
        return out

    def _on_request(self, out: Output, reqs) -> None:
        if self.replica_id != self.primary:
            out.send.append(Send(self.primary, self.auth.sign(Forward(tuple(reqs),
                                                                      self.replica_id))))
            return
        for r in reqs:
            key = (r.client_id, r.request_seq)
            if key not in self.pending_keys and self.auth.verify_request(r):
                self.pending_keys.add(key)
                self.pending.append(r)

    def _on_pre_prepare(self, out: Output, pp: PrePrepare) -> None:
        self.pps[pp.seq] = pp
        if self.replica_id != self.primary:
            self._vote(out, Prepare(0, pp.seq, pp.digest, self.replica_id))
            self.prepares.setdefault(pp.seq, {}).setdefault(self.replica_id, pp.digest)
        self._progress(out, pp.seq)

    def _progress(self, out: Output, seq: int) -> None:
        pp = self.pps.get(seq)
        if pp is None:
            return
        q = self.config.quorum
        votes = [d for r, d in self.prepares.get(seq, {}).items() if r != self.primary]
        if seq not in self.sent_commit and sum(d == pp.digest for d in votes) >= q - 1:
            self.sent_commit.add(seq)
            c = self._vote(out, Commit(0, seq, pp.digest, self.replica_id))
            self.commits.setdefault(seq, {}).setdefault(self.replica_id, c)
        while True:
            s = self.last_executed + 1
            pp = self.pps.get(s)
            if pp is None or s not in self.sent_commit:
                return
            good = [c for c in self.commits.get(s, {}).values() if c.digest == pp.digest]
            if len(good) < q:
                return
            t = max(self.last_time + 1, pp.time_ms)
            reqs = tuple(r for r in pp.requests
                         if (r.client_id, r.request_seq) not in self.executed)
            self.executed.update((r.client_id, r.request_seq) for r in reqs)
            h = chain_digest(self.last_block_hash, s, pp.digest)
            out.execute.append(Execute(s, 0, t, reqs, (), pp.digest, self.last_block_hash, h,
                                       pp, tuple(good[:q])))
            self.last_executed, self.last_block_hash, self.last_time = s, h, t
