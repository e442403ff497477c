"""A tiny deterministic lock-step harness for consensus.Replica clusters.

`Cluster` plays the shell for n replicas: every Output is applied by the node's own shell code
(`bftnode.node.driver.apply_output`: persist -> send -> execute -> reply -> evidence -> fetch
-> load_clients) through `_Ports`: records kept in a list, Sends delivered in FIFO order,
blocks executed by the node's executor (`execute_and_commit`, the real KVApplication) into a
MemoryStore per replica, which answers ServeFetch (`blocks_for_fetch`). Time moves with Ticks. Faults are explicit: `down` replicas neither send nor receive, and `tamper`
may rewrite or drop any message in flight. Tests get the class through the `Cluster` fixture.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from bftnode.app import KVApplication
from bftnode.node.driver import apply_output, run_sync
from bftnode.node.executor import execute_and_commit
from consensus import (
    Authenticator,
    ClientRequest,
    Config,
    Conviction,
    Ed25519Signer,
    Ed25519Verifier,
    Execute,
    Executed,
    FastSigner,
    FastVerifier,
    OwnVote,
    PreparedCert,
    Prune,
    Receive,
    RecoveredState,
    Replica,
    Request,
    StableCheckpoint,
    Tick,
    ViewState,
    sign_request,
)
from storage.memory import MemoryStore

DOMAIN = b"test-chain"
Tamper = Callable[[int, int, Any], list[Any] | None]


class Cluster:
    def __init__(self, n: int = 4, fast: bool = True, **cfg: Any) -> None:
        cfg.setdefault("heartbeat_ms", 0)
        # admission rates off: these tests drive bursts at virtual time 0 (test_pbft_fair_share
        # covers the rates)
        cfg.setdefault("source_rate_requests", 0)
        cfg.setdefault("source_rate_bytes", 0)
        self.config = Config(n=n, **cfg)
        self.fast = fast
        signer_cls = FastSigner if fast else Ed25519Signer
        self.signers = [signer_cls.from_seed_int(i) for i in range(n)]
        self.keys = [s.public_key for s in self.signers]
        self.now = 0
        self.queue: deque[tuple[int, int, Any]] = deque()
        self.down: set[int] = set()
        self.tamper: Tamper | None = None
        self.executed: dict[int, dict[int, Execute]] = {i: {} for i in range(n)}
        self.records: dict[int, list[Any]] = {i: [] for i in range(n)}
        self.evidence: dict[int, list[Any]] = {i: [] for i in range(n)}
        self.certified: dict[int, list[Any]] = {i: [] for i in range(n)}  # StateCertified
        self.diverged: dict[int, list[Any]] = {i: [] for i in range(n)}  # StateDivergence
        self.loads: dict[int, int] = {i: 0 for i in range(n)}  # clients loaded (LoadClients)
        self.hold_loads: set[int] = set()
        self.held_loads: dict[int, list[Any]] = {i: [] for i in range(n)}
        self.replies: dict[int, list[Any]] = {i: [] for i in range(n)}
        self.sent: list[Any] = []  # every message put on the wire (for equivocation checks)
        self.delivered = 0
        self.replicas = [Replica(self.config, i, self.auth(i)) for i in range(n)]
        self.app = KVApplication(validators=self.keys)
        self.stores = [MemoryStore(dedup_window=self.config.dedup_window, name=f"r{i}")
                       for i in range(n)]
        self._ports = [_Ports(self, i) for i in range(n)]
        self._clients: dict[int, Any] = {}

    # ------------------------------------------------------------ setup helpers

    def auth(self, i: int) -> Authenticator:
        verifier = FastVerifier() if self.fast else Ed25519Verifier()
        return Authenticator(DOMAIN, self.signers[i], verifier, self.keys)

    def client(self, c: int = 0):
        if c not in self._clients:
            cls = FastSigner if self.fast else Ed25519Signer
            self._clients[c] = cls.from_seed_int(1000 + c, b"client")
        return self._clients[c]

    def request(self, c: int, seq: int, op: bytes = b"op", valid_until: int = 0) -> Request:
        return sign_request(DOMAIN, self.client(c), Request(b"", seq, op, valid_until))

    # ------------------------------------------------------------ the shell

    def apply(self, rid: int, out) -> None:
        run_sync(apply_output(out, self._ports[rid]))

    def window_of(self, rid: int, client: bytes) -> tuple[int, ...]:
        seqs = [r.request_seq for ex in self.executed[rid].values() for r in ex.requests
                if r.client_id == client]
        if not seqs:
            return ()
        top = max(seqs)
        return tuple(sorted(s for s in seqs if s > top - self.config.dedup_window))

    def step(self, rid: int, event) -> None:
        if rid in self.down:
            return
        self.apply(rid, self.replicas[rid].step(event))

    def deliver_all(self, limit: int = 2_000_000) -> None:
        while self.queue:
            sender, to, msg = self.queue.popleft()
            if sender in self.down or to in self.down:
                continue
            msgs = [msg]
            if self.tamper is not None:
                changed = self.tamper(sender, to, msg)
                if changed is not None:
                    msgs = changed
            for m in msgs:
                self.delivered += 1
                assert self.delivered < limit, "message storm"
                self.step(to, Receive(sender, m))

    def tick(self, dt: int = 1) -> None:
        self.now += dt
        for i in range(self.config.n):
            self.step(i, Tick(self.now))
        self.deliver_all()

    def submit(self, req: Request, to: int = 0) -> None:
        self.step(to, ClientRequest(req))
        self.deliver_all()

    def run_until(self, cond: Callable[[], bool], timeout_ms: int = 60_000, dt: int = 10) -> bool:
        """Tick forward until `cond()` holds; False if the deadline passes first."""
        deadline = self.now + timeout_ms
        self.deliver_all()
        while not cond():
            if self.now >= deadline:
                return False
            self.tick(dt)
        return True

    # ------------------------------------------------------------ observations

    def up(self) -> list[int]:
        return [i for i in range(self.config.n) if i not in self.down]

    def all_executed(self, reqs: list[Request], replicas: list[int] | None = None) -> bool:
        want = {(r.client_id, r.request_seq) for r in reqs}
        for i in replicas if replicas is not None else self.up():
            got = {
                (r.client_id, r.request_seq)
                for ex in self.executed[i].values()
                for r in ex.requests
            }
            if not want <= got:
                return False
        return True

    def executed_keys(self, i: int) -> list[tuple[bytes, int]]:
        return [
            (r.client_id, r.request_seq)
            for s in sorted(self.executed[i])
            for r in self.executed[i][s].requests
        ]

    def hashes(self, i: int) -> dict[int, bytes]:
        return {s: ex.block_hash for s, ex in self.executed[i].items()}

    def assert_agreement(self) -> None:
        by_seq: dict[int, set[bytes]] = {}
        for i in range(self.config.n):
            for s, h in self.hashes(i).items():
                by_seq.setdefault(s, set()).add(h)
        bad = {s: hs for s, hs in by_seq.items() if len(hs) > 1}
        assert not bad, f"divergence at seqs {sorted(bad)}"

    def kinds(self, i: int) -> list[str]:
        return [e.kind for e in self.evidence[i]]

    # ------------------------------------------------------------ crash and restart

    def recovered(self, i: int, max_clients: int | None = None) -> RecoveredState:
        """What storage would rebuild from replica i's records and executed blocks (the dedup
        windows of at most `max_clients` clients)."""
        view, in_vc, stable, votes, prune = 0, False, None, [], 0
        prepared: dict[tuple[int, int], Any] = {}
        convicted: dict[int, Conviction] = {}
        for rec in self.records[i]:
            if isinstance(rec, ViewState):
                view, in_vc = rec.view, rec.in_view_change
            elif isinstance(rec, StableCheckpoint):
                stable = rec
            elif isinstance(rec, Prune):
                prune = max(prune, rec.upto)
            elif isinstance(rec, OwnVote):
                votes.append(rec.message)
            elif isinstance(rec, PreparedCert):
                pp = rec.proof.pre_prepare
                prepared[(pp.view, pp.seq)] = rec.proof
            elif isinstance(rec, Conviction):
                convicted.setdefault(rec.replica, rec)
        votes = [m for m in votes if getattr(m, "seq", prune + 1) > prune]
        log = self.executed[i]
        last = max(log, default=0)
        clients: dict[bytes, list[int]] = {}
        for ex in log.values():
            for r in ex.requests:
                clients.setdefault(r.client_id, []).append(r.request_seq)
        return RecoveredState(
            view=view,
            in_view_change=in_vc,
            own_votes=tuple(votes),
            stable_checkpoint=stable,
            last_executed=last,
            last_block_hash=log[last].block_hash if last else bytes(32),
            last_time_ms=log[last].time_ms if last else 0,
            client_executed={c: tuple(s) for c, s in list(clients.items())[:max_clients]},
            clients_complete=max_clients is None or len(clients) <= max_clients,
            prepared=tuple(p for (_, seq), p in sorted(prepared.items()) if seq > prune),
            convicted=tuple(convicted.values()),
        )

    def crash(self, i: int) -> None:
        self.down.add(i)

    def restart(self, i: int, max_clients: int | None = None) -> None:
        self.replicas[i] = Replica(self.config, i, self.auth(i), self.recovered(i, max_clients))
        self.down.discard(i)
        self.step(i, Tick(self.now))


class _Ports:
    """Replica `rid`'s OutputPorts: what the tests read (records, sent, executed, replies,
    evidence, loads) is kept on the cluster as the node's shell code applies each Output."""

    def __init__(self, cluster: Cluster, rid: int) -> None:
        self.c = cluster
        self.rid = rid

    @property
    def blocks(self) -> MemoryStore:
        return self.c.stores[self.rid]

    def step(self, event):
        return self.c.replicas[self.rid].step(event)

    async def drain(self) -> None:
        pass  # blocks are stored as they are executed

    async def persist(self, records) -> None:
        self.c.records[self.rid].extend(records)

    async def send(self, send) -> None:
        c, rid = self.c, self.rid
        c.sent.append(send.message)
        targets = [send.to] if send.to is not None else [
            j for j in range(c.config.n) if j != rid
        ]
        for to in targets:
            c.queue.append((rid, to, send.message))

    async def execute(self, blocks, replies) -> None:
        c, rid = self.c, self.rid
        log = c.executed[rid]
        for ex in blocks:
            assert ex.seq not in log, f"replica {rid} executed seq {ex.seq} twice"
            assert ex.seq == max(log, default=0) + 1, f"replica {rid} skipped to {ex.seq}"
            log[ex.seq] = ex
        if blocks:
            execute_and_commit(c.stores[rid], c.app, blocks)
        c.replies[rid].extend(replies)
        if c.config.state_votes:  # as the node: each stored block's roots
            for ex in blocks:
                sr, rr = c.stores[rid].block_roots(ex.seq)
                await apply_output(self.step(Executed(ex.seq, ex.block_hash, sr, rr)), self)

    def evidence(self, ev) -> None:
        self.c.evidence[self.rid].append(ev)

    def certified(self, c) -> None:
        self.c.certified[self.rid].append(c)
        self.c.stores[self.rid].put_state_certificate(c.seq, c.votes)

    def diverged(self, d) -> None:
        self.c.diverged[self.rid].append(d)

    async def client_histories(self, load):
        c, rid = self.c, self.rid
        if rid in c.hold_loads:  # a slow shell: the test answers later
            c.held_loads[rid].append(load)
            return None
        # storage's answer: every executed seq of the client in its dedup window
        c.loads[rid] += len(load.client_ids)
        hist = tuple((cid, c.window_of(rid, cid)) for cid in load.client_ids)
        return max(c.executed[rid], default=0), hist

    def applied(self, out) -> None:
        pass


@pytest.fixture
def cluster_cls():
    return Cluster
