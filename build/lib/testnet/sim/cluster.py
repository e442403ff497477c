"""The deterministic cluster simulator: n replicas, clients, a virtual clock and the checkers.

Owns `SimOptions` (everything a run depends on besides the seed), `SimCluster` (one run: an
event queue of deliveries, ticks, client submissions and crash/restart controls; replicas
stepped one event at a time, each Output applied by the node's own shell code,
`bftnode.node.driver.apply_output` (persist -> send -> execute -> reply -> evidence -> fetch ->
load_clients), through `SimPorts`: a `storage.MemoryStore` per replica, the simulated network,
the real `KVApplication` run by `bftnode.node.executor.execute_and_commit`, blocks served by
`blocks_for_fetch`) and `SimResult`. Safety is checked after every step (agreement,
total order, exactly-once, checkpoint convergence, honest equivocation, durable-before-send);
liveness after the network heals; two more checkers: no honest replica raised (an exception
from its step, or from decoding a message to it, is a failed check and a stopped replica, never
a crash of the simulator) and honest memory within bound (`SimOptions.memory_bound_mb`). A
failing run carries its seed and the last events.
Imports: stdlib, consensus, storage, bftnode (app, node.driver, node.executor), testnet
(checkers, sim.network, sim.stores). No I/O, no wall clock except `time.process_time` for the
CPU figure.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bftnode.app import KVApplication
from bftnode.node.driver import apply_output, run_sync
from bftnode.node.executor import execute_and_commit
from consensus import (
    Authenticator,
    Checkpoint,
    ClientRequest,
    Commit,
    Config,
    Conviction,
    DecodeError,
    Ed25519Signer,
    Ed25519Verifier,
    Execute,
    FastSigner,
    FastVerifier,
    FetchedBlocks,
    InvariantViolation,
    NewView,
    OwnVote,
    Prepare,
    PrePrepare,
    Receive,
    Rejected,
    Request,
    ServeSnapshot,
    StableCheckpoint,
    Tick,
    ViewChange,
    ViewState,
    decode,
    encode,
    sign_request,
)
from consensus.codec import chain_digest
from storage.memory import MemoryStore
from testnet.adversary import ByzantineReplica, Collusion
from testnet.checkers import EquivocationMonitor, find_divergence, find_equivocations

from . import snapshots
from .footprint import held_bytes
from .idle import IdleWatch
from .network import Faults, SimNetwork
from .roots import RootsChecker
from .stores import SimBlocks, SimRecords

DOMAIN = b"bftnode-sim"
PLANTED_BUGS = ("quorum-2f", "no-persist", "honest-equivocator", "no-signature-check")
_VOTES = (PrePrepare, Prepare, Commit, ViewChange, NewView)

DELIVER, TICK, SUBMIT, RETRY, CONTROL = range(5)
_KIND_NAMES = {DELIVER: "deliver", TICK: "tick", SUBMIT: "submit", RETRY: "retry",
               CONTROL: "control"}


@dataclass
class SimOptions:
    """Everything a run depends on besides the seed (the seed replays it exactly)."""

    n: int = 4
    requests: int = 20
    clients: int = 4
    crypto: str = "fast"  # "fast" | "ed25519"
    byzantine: dict[int, list[str]] = field(default_factory=dict)
    collude: bool = False  # all byzantine replicas form one colluding group
    twins: list[int] = field(default_factory=list)  # ids run by two replicas with one key
    faults: Faults = field(default_factory=Faults)
    crashes: list[tuple[int, int, int | None]] = field(default_factory=list)  # (id, at, restart)
    # torn: a crash hits in the middle of the replica's next output, after the records are
    # durable but before anything is sent or executed (the worst moment for the ordering rule)
    torn_crashes: bool = False
    # every replica's disk is a storage.MemoryStore (the same ledger code and recovery as
    # LevelDB); a crash keeps every write ("sim") or loses the unsynced ones ("memory", as a
    # power cut does)
    store: str = "sim"
    submit_window_ms: int = 2_000
    client_retry_ms: int = 3_000
    liveness_bound_ms: int = 120_000
    batch_max: int = 8
    checkpoint_interval: int = 4
    watermark_window: int = 16
    clock_skew_ms: int = 0
    # consensus.Config.forward_relay_ms (PBFT's relay of client requests) and max_in_flight
    # (pipeline depth of partial batches); None = the Config default
    forward_relay_ms: int | None = None
    max_in_flight: int | None = None
    # consensus.Config.max_clients: below `clients`, the client table evicts and loads back
    # (LoadClients), and a restart restores only this many clients; None = the Config default
    max_clients: int | None = None
    # consensus.Config.source_rate_bytes (each source's admission-rate floor in bytes/s);
    # None = the Config default
    source_rate_bytes: int | None = None
    wire: bool = True  # encode/decode every message (catches codec problems)
    planted_bug: str | None = None
    trace_len: int = 200
    max_events: int = 1_000_000  # a storm of events at one instant ends as 'stalled'
    stop_on_violation: bool = True
    authenticated_state: bool = False  # each store keeps the state tree (storage.merkle_tree)
    app_params: dict = field(default_factory=dict)  # a genesis `app` (admins, checks, quotas)
    # each replica prunes blocks older than this many (0: keeps all); replicas in
    # `wipe_on_restart` lose their whole disk at their restart (snapshot catch-up: snapshots.py)
    retain_blocks: int = 0
    wipe_on_restart: list[int] = field(default_factory=list)
    # the op of the i-th request (None: "put k<i> v<i>")
    request_op: Callable[[int], bytes] | None = None
    # checker "honest memory within bound": every honest replica's held bytes (objects
    # reachable from it, `footprint.held_bytes`), sampled at most every `memory_sample_ms` of
    # virtual time on its ticks and at the end, must stay within `memory_bound_mb` MiB. An
    # honest replica of these small simulated clusters holds well under 1 MiB; what one
    # faulty peer can make it keep (buffered messages, tables) must stay far below its own
    # 8 MiB frames times any count. 0 = not sampled
    memory_bound_mb: float = 32.0
    memory_sample_ms: int = 1_000
    # checker "no client load, faults heal -> a block within T" (idle.py): every correct
    # replica executes a block above the heal-time height within this many ms; 0 = off
    idle_block_ms: int = 0
    idle_faulty_extra_ms: int = 10_000  # added to it when a replica's fault never heals

    def __post_init__(self) -> None:
        if self.store not in ("sim", "memory"):
            raise ValueError(f"store must be 'sim' or 'memory', got {self.store!r}")
        if self.crypto not in ("fast", "ed25519"):
            raise ValueError(f"crypto must be 'fast' or 'ed25519', got {self.crypto!r}")
        if self.planted_bug is not None and self.planted_bug not in PLANTED_BUGS:
            raise ValueError(f"unknown planted bug {self.planted_bug!r}; known: {PLANTED_BUGS}")
        if any("forge" in s for specs in self.byzantine.values() for s in specs):
            self.crypto = "ed25519"  # forgery is only meaningful against real signatures

    def config(self) -> Config:
        cls = _QuorumTwoF if self.planted_bug == "quorum-2f" else Config
        extra = {k: v for k, v in (("forward_relay_ms", self.forward_relay_ms),
                                   ("max_in_flight", self.max_in_flight),
                                   ("max_clients", self.max_clients),
                                   ("source_rate_bytes", self.source_rate_bytes))
                 if v is not None}
        return cls(n=self.n, checkpoint_interval=self.checkpoint_interval,
                   watermark_window=self.watermark_window, batch_max=self.batch_max,
                   state_votes=self.authenticated_state, **extra)

    def faulty_ids(self) -> set[int]:
        """Replicas counted against f: byzantine, twinned, permanently one-way or crashed."""
        ids = set(self.byzantine) | set(self.twins) | self.faults.permanently_faulty()
        ids |= {rid for rid, _, restart in self.crashes if restart is None}
        return ids


@dataclass(frozen=True, slots=True)
class _QuorumTwoF(Config):
    """Planted bug: quorums of 2f instead of 2f+1 (the checkers must catch the damage)."""

    @property
    def quorum(self) -> int:
        return 2 * self.f


class _TrustingVerifier:
    """Planted bug: accepts every signature (forged votes and certificates get through)."""

    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool:
        return True


@dataclass
class Violation:
    kind: str
    time_ms: int
    replica: int | None
    detail: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "time_ms": self.time_ms, "replica": self.replica,
                "detail": self.detail}


@dataclass
class SimResult:
    seed: int
    safety: str
    liveness: str
    violations: list[Violation]
    committed: dict[int, int]
    figures: dict[str, Any]
    trace: list[str]
    options: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.safety == "ok" and self.liveness == "ok"

    @property
    def checks_ok(self) -> bool:
        """Safety, liveness and the extra checkers: no honest replica raised, honest memory
        within bound."""
        return (self.ok and self.figures.get("honest_raised", "ok") == "ok"
                and self.figures.get("honest_memory", "ok") != "exceeded")

    def as_dict(self, with_trace: bool | None = None) -> dict:
        d = {"seed": self.seed, "safety": self.safety, "liveness": self.liveness,
             "committed": {str(k): v for k, v in sorted(self.committed.items())},
             "violations": [v.as_dict() for v in self.violations], **self.figures,
             "options": self.options}
        if with_trace or (with_trace is None and not self.checks_ok):
            d["trace"] = self.trace
        return d

    def failure_text(self) -> str:
        lines = [f"seed {self.seed}: safety={self.safety} liveness={self.liveness} "
                 f"honest_raised={self.figures.get('honest_raised')} "
                 f"honest_memory={self.figures.get('honest_memory')} (peak MiB "
                 f"{self.figures.get('honest_memory_peak_mb')}, bound "
                 f"{self.figures.get('honest_memory_bound_mb')})"]
        lines += [f"  {v.kind} at {v.time_ms} ms (replica {v.replica}): {v.detail}"
                  for v in self.violations[:10]]
        lines.append(f"  options: {self.options}")
        lines.append(f"  last {len(self.trace)} events:")
        lines += ["    " + t for t in self.trace]
        return "\n".join(lines)


def describe(msg: Any) -> str:
    """One short line for a message in a trace."""
    if isinstance(msg, bytes | bytearray):
        return f"<{len(msg)} raw bytes>"
    name = type(msg).__name__
    parts = []
    for attr in ("view", "new_view", "seq", "stable_seq", "last_executed", "from_seq", "to_seq"):
        if hasattr(msg, attr):
            parts.append(f"{attr}={getattr(msg, attr)}")
    for attr in ("digest", "state_digest"):
        if hasattr(msg, attr):
            parts.append(f"{attr}={getattr(msg, attr)[:4].hex()}")
    if hasattr(msg, "requests"):
        parts.append(f"reqs={len(msg.requests)}")
    if hasattr(msg, "replica"):
        parts.append(f"by={msg.replica}")
    return f"{name}({' '.join(parts)})"


def describe_event(event: Any) -> str:
    if isinstance(event, Receive):
        return f"Receive from {event.sender}: {describe(event.message)}"
    if isinstance(event, ClientRequest):
        return f"ClientRequest {event.request.client_id[:4].hex()}/{event.request.request_seq}"
    if isinstance(event, FetchedBlocks):
        return f"FetchedBlocks to {event.to}: {len(event.blocks)} blocks"
    return repr(event)


class SimNode:
    """One simulated replica process: its disk (`store`) survives crashes; `records` and
    `blocks` are what the checkers saw it persist and execute."""

    def __init__(self, slot: int, rid: int, honest: bool, strategies: list[str],
                 auth: Authenticator, dedup_window: int, offset_ms: int,
                 authenticated_state: bool = False) -> None:
        self.slot = slot
        self.rid = rid
        self.honest = honest
        self.strategies = strategies
        self.auth = auth
        self.records = SimRecords()
        self.blocks = SimBlocks(dedup_window)
        self.replica: Any = None
        self.up = False
        self.tick_at: int | None = None
        self.offset_ms = offset_ms
        self.incarnation = 0
        self.executed: set[tuple[bytes, int]] = set()
        self.persisted_votes: list[Any] = []
        self.stable: dict[int, bytes] = {}
        self.last_clock = 0
        self.max_view = 0
        self.view_changes = 0
        self.links: set[int] | None = None  # twins: the replicas this copy talks to
        # strict about conflicting own votes only for honest replicas: a Byzantine one's
        # strategy may persist them
        self.store = MemoryStore(dedup_window=dedup_window, strict_votes=honest,
                                 name=f"sim-r{rid}/{slot}",
                                 authenticated_state=authenticated_state)
        self.ports: SimPorts | None = None
        self.shell: Any = None  # its SnapshotShell (snapshots.py)
        self.torn_pending = False
        self.convicted: dict[int, int] = {}  # accused -> height, from its Conviction records
        self.held_peak = 0  # most bytes its replica held at a memory sample (honest only)
        self.next_sample_ms = 0


ReplicaFactory = Callable[[Config, int, Authenticator, Any], Any]


def default_replica_factory(config: Config, rid: int, auth: Authenticator, restored: Any) -> Any:
    try:  # imported late: the simulator loads without a replica
        from consensus import Replica
    except ImportError:
        from consensus.replica import Replica

    return Replica(config, rid, auth, restored)


class SimCluster:
    """One seeded run. `run()` returns a `SimResult`; the same seed gives the same result."""

    def __init__(self, opts: SimOptions, seed: int,
                 replica_factory: ReplicaFactory | None = None) -> None:
        self.opts = opts
        self.seed = seed
        self.config = opts.config()
        self.factory = replica_factory or default_replica_factory
        self.net = SimNetwork(opts.faults, random.Random(f"{seed}/net"))
        self.rng = random.Random(f"{seed}/cluster")
        self.now = 0
        self._queue: list[tuple] = []
        self._counter = 0
        self.violations: list[Violation] = []
        self.trace: deque[tuple] = deque(maxlen=opts.trace_len)
        self.equiv = EquivocationMonitor()
        self.faulty_equiv = EquivocationMonitor()
        self.agreed: dict[int, tuple[bytes, int]] = {}  # seq -> (block hash, first replica)
        self.stable_agreed: dict[int, tuple[bytes, int]] = {}
        self.convictions: dict[int, tuple[int, int]] = {}  # accused -> (height, first replica)
        self.counts: dict[str, int] = {"delivered": 0, "sent": 0, "undecodable": 0,
                                       "rejected": 0, "steps": 0, "faulty_equivocations": 0}
        self.evidence: dict[str, int] = {}
        # checker "no honest replica raised": what an honest replica's step (or the decoding of
        # a message to it) raised; each is also a safety violation that stops the replica
        self.honest_exceptions: list[dict[str, Any]] = []
        self._submitted_keys: set[tuple[bytes, int]] = set()
        self.roots = RootsChecker(self)  # with state votes: roots agree, certificates hold
        self._build_nodes()
        self._build_clients()

    # ------------------------------------------------------------ setup

    def _keys(self, i: int, domain: bytes) -> Any:
        cls = Ed25519Signer if self.opts.crypto == "ed25519" else FastSigner
        return cls.from_seed_int(i, domain)

    def _verifier(self) -> Any:
        return Ed25519Verifier() if self.opts.crypto == "ed25519" else FastVerifier()

    def _build_nodes(self) -> None:
        o = self.opts
        signers = [self._keys(i, b"sim-replica") for i in range(o.n)]
        keys = [s.public_key for s in signers]
        self.auths = [Authenticator(DOMAIN, signers[i], self._verifier(), keys)
                      for i in range(o.n)]
        self.app = KVApplication(validators=keys, params=o.app_params)  # stateless: its state is each store's
        if o.planted_bug == "no-signature-check":
            for i in range(o.n):
                if i not in o.byzantine:
                    self.auths[i].verifier = _TrustingVerifier()
        byz = dict(o.byzantine)
        if o.planted_bug == "honest-equivocator":
            byz.setdefault(self.config.primary(0), []).append("equivocate")
        self.strategies = byz
        self.collusion = None
        if o.collude and o.byzantine:
            self.collusion = Collusion({rid: self.auths[rid] for rid in sorted(o.byzantine)},
                                       seed=self.seed)
        self.nodes: list[SimNode] = []
        self.by_rid: dict[int, list[SimNode]] = {}
        for rid in list(range(o.n)) + sorted(set(o.twins)):
            honest = rid not in o.byzantine and rid not in o.twins
            offset = self.rng.randint(0, o.clock_skew_ms) if o.clock_skew_ms else 0
            node = SimNode(len(self.nodes), rid, honest, byz.get(rid, []), self.auths[rid],
                           self.config.dedup_window, offset, o.authenticated_state)
            node.ports = SimPorts(self, node)
            node.shell = snapshots.make_shell(self, node)
            self.nodes.append(node)
            self.by_rid.setdefault(rid, []).append(node)
        for rid in sorted(set(o.twins)):
            others = [j for j in range(o.n) if j != rid]
            self.rng.shuffle(others)
            half = len(others) // 2
            a, b = self.by_rid[rid]
            a.links, b.links = set(others[:half]), set(others[half:])
            b.offset_ms += 1 + self.rng.randint(0, 50)  # twins disagree on time: they equivocate
        self.faulty = o.faulty_ids()
        self.live_nodes = [nd for nd in self.nodes if nd.honest and nd.rid not in self.faulty]

    def _build_clients(self) -> None:
        o = self.opts
        self.clients = [self._keys(1000 + c, b"sim-client") for c in range(o.clients)]
        next_seq = [0] * o.clients
        times = sorted(self.rng.randint(0, o.submit_window_ms) for _ in range(o.requests))
        self.requests: list[Request] = []
        for i, t in enumerate(times):
            c = self.rng.randrange(o.clients)
            next_seq[c] += 1
            op = f"put k{i} v{i}".encode() if o.request_op is None else o.request_op(i)
            req = Request(client_id=b"", request_seq=next_seq[c], op=op)
            req = sign_request(DOMAIN, self.clients[c], req)
            self.requests.append(req)
            self._push(t, SUBMIT, i, None, None)
        self.submitted = 0
        self.exec_count: dict[tuple[bytes, int], int] = {}
        self.remaining = 0

    # ------------------------------------------------------------ event queue

    def _push(self, t: int, kind: int, a: Any, b: Any, c: Any) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (t, self._counter, kind, a, b, c))

    def at(self, t: int, fn: Callable[[], None], label: str = "control") -> None:
        """Run `fn` at virtual time `t` (crash, restart, custom fault)."""
        self._push(t, CONTROL, fn, label, None)

    # ------------------------------------------------------------ replicas

    def _clock(self, node: SimNode) -> int:
        node.last_clock = max(node.last_clock, self.now + node.offset_ms)
        return node.last_clock

    def start(self, node: SimNode) -> None:
        restored = None
        if node.incarnation > 0:
            try:
                restored = self._recover(node)
            except Exception as exc:
                self.violate("storage-recovery", node.rid, f"{type(exc).__name__}: {exc}")
                return
        node.incarnation += 1
        inner = self.factory(self.config, node.rid, node.auth, restored)
        if node.strategies:
            seed = self.seed * 1000 + node.slot * 10 + node.incarnation
            inner = ByzantineReplica(inner, list(node.strategies), node.auth,
                                     replica_id=node.rid, config=self.config, seed=seed,
                                     collusion=self.collusion)
        node.replica = inner
        node.up = True
        node.tick_at = None
        self._step(node, Tick(self._clock(node)))

    def _recover(self, node: SimNode) -> Any:
        """A restarted replica's state: what its store recovers after the crash."""
        node.store.crash(lose_unsynced=self.opts.store == "memory")
        return node.store.recover(max_clients=self.config.max_clients)

    def crash(self, rid: int, torn: bool = False) -> None:
        for node in self.by_rid[rid]:
            if torn and node.up:
                node.torn_pending = True  # takes effect inside its next output
                continue
            node.up = False
            node.replica = None
            node.tick_at = None
            self.trace.append((self.now, "crash", node.slot, None, None))

    def restart(self, rid: int) -> None:
        for node in self.by_rid[rid]:
            node.torn_pending = False
            if not node.up:
                self.trace.append((self.now, "restart", node.slot, None, None))
                if rid in self.opts.wipe_on_restart:
                    snapshots.wipe(self, node)
                self.start(node)

    def _step(self, node: SimNode, event: Any) -> None:
        out = self._step_replica(node, event)
        if out is None:
            return
        assert node.ports is not None
        try:
            run_sync(apply_output(out, node.ports))
        except _Stopped:
            pass

    def _step_replica(self, node: SimNode, event: Any) -> Any:
        """The replica's Output, or None if it raised (then it is stopped)."""
        self.counts["steps"] += 1
        try:
            return node.replica.step(event)
        except Exception as exc:  # the replica stopped itself (invariant) or has a bug
            kind = "invariant-violation" if isinstance(exc, InvariantViolation) else "exception"
            if node.honest:
                self._honest_raised(node, kind, exc, describe_event(event))
            else:
                self.counts["byzantine_crashes"] = self.counts.get("byzantine_crashes", 0) + 1
            self.trace.append((self.now, f"STOPPED ({type(exc).__name__})", node.slot, None, None))
            node.up, node.replica, node.tick_at = False, None, None
            return None

    def _honest_raised(self, node: SimNode, kind: str, exc: BaseException, on: str) -> None:
        detail = f"{type(exc).__name__}: {str(exc)[:300]} (on {on})"
        self.violate(kind, node.rid, detail)
        self.honest_exceptions.append({"replica": node.rid, "time_ms": self.now,
                                       "error": type(exc).__name__, "detail": detail})

    def _sample_memory(self, node: SimNode) -> None:
        """Checker "honest memory within bound": the bytes the replica holds (see SimOptions)."""
        rep = node.replica
        held = held_bytes(rep, (getattr(rep, "auth", None), getattr(rep, "config", None)))
        node.held_peak = max(node.held_peak, held)
        node.next_sample_ms = self.now + self.opts.memory_sample_ms

    def _persisted(self, node: SimNode, records: Any) -> None:
        """Checks on what a replica made durable; a torn crash hits right after it."""
        if node.honest:
            for rec in records:
                self._check_record(node, rec)
        elif any(isinstance(r, ViewState) for r in records):
            self._note_view(node, records)
        if node.torn_pending:
            node.torn_pending = False
            self.trace.append((self.now, "torn-crash", node.slot, None, None))
            self._stop(node)

    def _executed(self, node: SimNode, exs: Any, replies: Any) -> None:
        """The production executor over the replica's store and the real app, then the
        checks on each block, then the replies."""
        if exs:
            self._store(node, execute_and_commit, node.store, self.app, exs)
            if self.opts.retain_blocks:
                stable = getattr(node.replica, "stable_seq", 0)
                self._store(node, node.shell.prune_step, self.opts.retain_blocks, stable)
        for ex in exs:
            node.blocks.append(ex)
            self._on_execute(node, ex)
        for r in replies:
            if isinstance(r, Rejected):
                self.counts["rejected"] += 1

    def _schedule_tick(self, node: SimNode, out: Any) -> None:
        if out.next_deadline_ms is not None and node.up:
            t = max(self.now, out.next_deadline_ms - node.offset_ms)
            if node.tick_at is None or t < node.tick_at or node.tick_at < self.now:
                node.tick_at = t
                self._push(t, TICK, node.slot, t, None)

    def _store(self, node: SimNode, fn: Callable[..., Any], *args: Any) -> Any:
        """A storage call; a StorageError stops the node (and is a violation if honest)."""
        try:
            return fn(*args)
        except Exception as exc:
            if node.honest:
                self.violate("storage-error", node.rid, f"{type(exc).__name__}: {exc}")
            self._stop(node)

    def _stop(self, node: SimNode) -> None:
        node.up, node.replica, node.tick_at = False, None, None
        raise _Stopped

    def _send(self, node: SimNode, to: int | None, msg: Any) -> None:
        self.counts["sent"] += 1
        if isinstance(msg, _VOTES + (Checkpoint,)) and msg.replica == node.rid:
            if node.honest:
                self._check_sent_vote(node, msg)
            elif self.faulty_equiv.add(msg) is not None:
                self.counts["faulty_equivocations"] += 1  # expected: shows the attack ran
        targets = [j for j in range(self.opts.n) if j != node.rid] if to is None else [to]
        if isinstance(msg, bytes | bytearray) or self.opts.wire:
            try:
                data = msg if isinstance(msg, bytes | bytearray) else encode(msg)
                msg = decode(data)
            except DecodeError:
                self.counts["undecodable"] += 1
                return
            except Exception as exc:  # decoding is the receivers' job: theirs is the crash
                self._decode_raised(node, targets, exc)
                return
        for dst in targets:
            if node.links is not None and dst not in node.links:
                continue
            for t in self.net.route(node.rid, dst, self.now):
                self._push(t, DELIVER, dst, node.rid, msg)

    def _decode_raised(self, sender: SimNode, targets: list[int], exc: Exception) -> None:
        """Decoding a message `sender` sent raised (not a DecodeError): every honest receiver
        that is up stops, as a real node whose pump raised would."""
        self.counts["undecodable"] += 1
        for dst in targets:
            for node in self.by_rid[dst]:
                if node.honest and node.up:
                    self._honest_raised(node, "exception", exc,
                                        f"decoding a message from {sender.rid}")
                    self.trace.append((self.now, f"STOPPED ({type(exc).__name__})", node.slot,
                                       sender.rid, None))
                    node.up, node.replica, node.tick_at = False, None, None

    # ------------------------------------------------------------ safety checks

    def violate(self, kind: str, replica: int | None, detail: str) -> None:
        self.violations.append(Violation(kind, self.now, replica, detail))

    def _note_view(self, node: SimNode, records: Any) -> None:
        for rec in records:
            if isinstance(rec, ViewState) and rec.view > node.max_view:
                node.view_changes += 1
                node.max_view = rec.view

    def _check_record(self, node: SimNode, rec: Any) -> None:
        if isinstance(rec, OwnVote):
            node.persisted_votes.append(rec.message)
            prev = self.equiv.add(rec.message)
            if prev is not None:
                self.violate("honest-equivocation", node.rid,
                             f"{describe(prev)} vs {describe(rec.message)}")
        elif isinstance(rec, StableCheckpoint):
            node.stable[rec.seq] = rec.digest
            first = self.stable_agreed.setdefault(rec.seq, (rec.digest, node.rid))
            if first[0] != rec.digest:
                self.violate("checkpoint-divergence", node.rid,
                             f"stable seq {rec.seq}: {rec.digest[:4].hex()} vs "
                             f"{first[0][:4].hex()} at replica {first[1]}")
            ex = node.blocks.blocks.get(rec.seq)
            if ex is not None and ex.block_hash != rec.digest:
                self.violate("checkpoint-mismatch", node.rid,
                             f"stable seq {rec.seq} digest {rec.digest[:4].hex()} but executed "
                             f"block {ex.block_hash[:4].hex()}")
        elif isinstance(rec, ViewState):
            self._note_view(node, (rec,))
            primary = self.config.primary(rec.view)
            if (not rec.in_view_change and primary in node.convicted
                    and len(node.convicted) <= self.config.f):
                self.violate("convicted-primary-installed", node.rid,
                             f"entered view {rec.view} of convicted replica {primary}")
        elif isinstance(rec, Conviction):
            self._check_conviction(node, rec)

    def _check_conviction(self, node: SimNode, rec: Conviction) -> None:
        """Convictions are a function of the agreed log: same height everywhere, and only
        replicas that really are faulty."""
        node.convicted.setdefault(rec.replica, rec.seq)
        first = self.convictions.setdefault(rec.replica, (rec.seq, node.rid))
        if first[0] != rec.seq:
            self.violate("conviction-divergence", node.rid,
                         f"replica {rec.replica} convicted at height {rec.seq} but replica "
                         f"{first[1]} convicted it at {first[0]}")
        faulty = set(self.strategies) | set(self.opts.twins)
        if rec.replica not in faulty:
            self.violate("honest-convicted", node.rid,
                         f"honest replica {rec.replica} convicted at height {rec.seq}")

    def _check_sent_vote(self, node: SimNode, msg: Any) -> None:
        if isinstance(msg, _VOTES) and not node.records.has_vote(msg):
            self.violate("sent-before-persist", node.rid, describe(msg))
        prev = self.equiv.add(msg)
        if prev is not None:
            self.violate("honest-equivocation", node.rid, f"{describe(prev)} vs {describe(msg)}")

    def _on_execute(self, node: SimNode, ex: Execute) -> None:
        if not node.honest:
            return
        blocks = node.blocks
        prev = blocks.blocks.get(ex.seq - 1)
        prev_hash = prev.block_hash if prev is not None else None
        if ex.seq != 1 and prev is None:
            self.violate("total-order", node.rid, f"executed seq {ex.seq} without {ex.seq - 1}")
        if prev_hash is not None and ex.prev_hash != prev_hash:
            self.violate("bad-chain", node.rid, f"seq {ex.seq} prev_hash does not link")
        if ex.block_hash != chain_digest(ex.prev_hash, ex.seq, ex.digest):
            self.violate("bad-chain", node.rid, f"seq {ex.seq} block hash is not chain_digest")
        if prev is not None and ex.time_ms <= prev.time_ms:
            self.violate("time-order", node.rid, f"seq {ex.seq} time {ex.time_ms} <= "
                         f"{prev.time_ms}")
        first = self.agreed.setdefault(ex.seq, (ex.block_hash, node.rid))
        if first[0] != ex.block_hash:
            self.violate("divergence", node.rid,
                         f"seq {ex.seq}: block {ex.block_hash[:4].hex()} but replica {first[1]} "
                         f"executed {first[0][:4].hex()}")
        cp = self.stable_agreed.get(ex.seq)
        if cp is not None and cp[0] != ex.block_hash:
            self.violate("checkpoint-mismatch", node.rid,
                         f"executed seq {ex.seq} as {ex.block_hash[:4].hex()} but replica "
                         f"{cp[1]} holds stable checkpoint {cp[0][:4].hex()} there")
        live = node in self.live_nodes
        for r in ex.requests:
            key = (r.client_id, r.request_seq)
            if key in node.executed:
                self.violate("duplicate-execution", node.rid,
                             f"request {r.client_id[:4].hex()}/{r.request_seq} executed twice")
                continue
            node.executed.add(key)
            self.exec_count[key] = self.exec_count.get(key, 0) + 1
            if live and key in self.submitted_keys:
                self.remaining -= 1

    def final_checks(self) -> None:
        """The shared checkers over the whole run (the per-step checks found the first)."""
        honest = [nd for nd in self.nodes if nd.honest]
        logs = {nd.rid: {s: ex.block_hash for s, ex in nd.blocks.blocks.items()} for nd in honest}
        for seq, hashes in find_divergence(logs):
            if not any(v.kind == "divergence" for v in self.violations):
                self.violate("divergence", None, f"seq {seq}: {hashes}")
        votes = [m for nd in honest for m in nd.persisted_votes]
        if find_equivocations(votes) and not any(
            v.kind == "honest-equivocation" for v in self.violations
        ):
            self.violate("honest-equivocation", None, "find_equivocations over persisted votes")

    # ------------------------------------------------------------ clients

    @property
    def submitted_keys(self) -> set[tuple[bytes, int]]:
        return self._submitted_keys

    def _submit(self, i: int, broadcast: bool) -> None:
        req = self.requests[i]
        key = (req.client_id, req.request_seq)
        if not broadcast:
            self._submitted_keys.add(key)
            self.submitted += 1
            self.remaining += sum(1 for nd in self.live_nodes if key not in nd.executed)
        up = [nd for nd in self.nodes if nd.up]
        if not up:
            targets = []
        elif broadcast:
            targets = up
        else:
            targets = [self.rng.choice(up)]
        for nd in targets:
            self.trace.append((self.now, "submit", nd.slot, None, req))
            self._step(nd, ClientRequest(req))
        self._push(self.now + self.opts.client_retry_ms, RETRY, i, None, None)

    def _acked(self, key: tuple[bytes, int]) -> bool:
        done = sum(1 for nd in self.live_nodes if key in nd.executed)
        return done >= min(self.config.f + 1, len(self.live_nodes))

    # ------------------------------------------------------------ the loop

    def run(self) -> SimResult:
        o = self.opts
        cpu0 = time.process_time()
        heal = o.faults.last_heal_ms()
        for rid, at, restart in o.crashes:
            self.at(at, lambda r=rid: self.crash(r, o.torn_crashes), "crash")
            if restart is not None:
                heal = max(heal, restart)
                self.at(restart, lambda r=rid: self.restart(r), "restart")
        for node in self.nodes:
            self.start(node)
        last_submit = max((e[0] for e in self._queue if e[2] == SUBMIT), default=0)
        self.heal_ms = heal
        watch = IdleWatch.attach(self, o.idle_block_ms, heal) if o.idle_block_ms else None
        deadline = max(heal, last_submit) + o.liveness_bound_ms
        events = 0
        done_at = None
        stop_reason = "deadline"
        while self._queue:
            t, _, kind, a, b, c = heapq.heappop(self._queue)
            if t > deadline:
                break
            self.now = t
            events += 1
            if kind == DELIVER:
                for node in self.by_rid[a]:
                    if not node.up or (node.links is not None and b not in node.links):
                        continue
                    self.counts["delivered"] += 1
                    self.trace.append((t, "deliver", node.slot, b, c))
                    self._clock(node)
                    self._step(node, Receive(b, c))
            elif kind == TICK:
                node = self.nodes[a]
                if node.up and node.tick_at == b:
                    node.tick_at = None
                    self.trace.append((t, "tick", node.slot, None, None))
                    self._step(node, Tick(self._clock(node)))
                    if (node.honest and node.up and o.memory_sample_ms
                            and t >= node.next_sample_ms):
                        self._sample_memory(node)
            elif kind == SUBMIT:
                self._submit(a, broadcast=False)
            elif kind == RETRY:
                req = self.requests[a]
                if not self._acked((req.client_id, req.request_seq)):
                    self._submit(a, broadcast=True)
            else:
                self.trace.append((t, b, None, None, None))
                a()
            if self.violations and o.stop_on_violation:
                stop_reason = "violation"
                break
            if (self.submitted == len(self.requests) and self.remaining == 0 and t >= heal
                    and (watch is None or watch.done(t))):
                done_at = t
                stop_reason = "done"
                break
            if watch is not None and watch.failed(t):
                stop_reason = "idle-stall"
                break
            if events >= o.max_events:
                stop_reason = "max-events"
                break
        if o.memory_sample_ms:
            for node in self.nodes:
                if node.honest and node.up:
                    self._sample_memory(node)
        self.final_checks()
        cpu = time.process_time() - cpu0
        safety = "violated" if self.violations else "ok"
        liveness = "ok" if done_at is not None else "stalled"
        if stop_reason == "violation" and done_at is None:
            liveness = "unknown"
        return SimResult(
            seed=self.seed,
            safety=safety,
            liveness=liveness,
            violations=list(self.violations),
            committed={rid: max(nd.blocks.last for nd in nds) for rid, nds in self.by_rid.items()},
            figures={**self._figures(events, cpu, done_at, stop_reason),
                     **(watch.figures() if watch is not None else {})},
            trace=self.format_trace(),
            options=self.describe_options(),
        )

    def _figures(self, events: int, cpu: float, done_at: int | None, stop: str) -> dict:
        honest = [nd for nd in self.nodes if nd.honest]
        return {
            "virtual_time_ms": self.now,
            "heal_ms": self.heal_ms,
            "completed_ms": done_at,
            "stop": stop,
            "requests": len(self.requests),
            "executed_everywhere": sum(
                1 for r in self.requests
                if all((r.client_id, r.request_seq) in nd.executed for nd in self.live_nodes)
            ),
            # over correct replicas (a deaf replica's own view may climb alone: see max_view_any)
            "view_changes": max((nd.view_changes for nd in self.live_nodes), default=0),
            "max_view": max((nd.max_view for nd in self.live_nodes), default=0),
            "max_view_any": max((nd.max_view for nd in honest), default=0),
            "messages": self.counts["sent"],
            "delivered": self.counts["delivered"],
            "dropped": dict(sorted(self.net.dropped.items())),
            "undecodable": self.counts["undecodable"],
            "rejected": self.counts["rejected"],
            "evidence": dict(sorted(self.evidence.items())),
            # accused -> height of its conviction (the same on every honest replica)
            "convicted": {r: seq for r, (seq, _) in sorted(self.convictions.items())},
            "convicted_on": sum(1 for nd in self.live_nodes if nd.convicted),
            "faulty_equivocations": self.counts["faulty_equivocations"],
            "events": events,
            "steps": self.counts["steps"],
            "client_loads": self.counts.get("client_loads", 0),
            "state_certificates": self.counts.get("state_certificates", 0),
            "cpu_s": round(cpu, 4),
            **self._checker_figures(),
        }

    def _checker_figures(self) -> dict[str, Any]:
        """The two checkers beyond safety and liveness: "no honest replica raised"
        (`honest_raised`: "ok" | "raised", with `honest_exceptions`) and "honest memory within
        bound" (`honest_memory`: "ok" | "exceeded" | "unchecked", with the peak held MiB per
        honest replica and the bound)."""
        o = self.opts
        peaks = {nd.rid: round(nd.held_peak / 2**20, 3) for nd in self.nodes if nd.honest}
        if not o.memory_sample_ms:
            memory = "unchecked"
        else:
            memory = "exceeded" if any(p > o.memory_bound_mb for p in peaks.values()) else "ok"
        return {
            "honest_raised": "raised" if self.honest_exceptions else "ok",
            "honest_exceptions": self.honest_exceptions[:10],
            "honest_memory": memory,
            "honest_memory_peak_mb": {str(r): p for r, p in sorted(peaks.items())},
            "honest_memory_bound_mb": o.memory_bound_mb,
        }

    def describe_options(self) -> dict:
        o = self.opts
        return {"n": o.n, "f": self.config.f, "requests": o.requests, "crypto": o.crypto,
                "byzantine": {str(k): v for k, v in sorted(o.byzantine.items())},
                "collude": o.collude, "twins": o.twins, "faults": o.faults.describe(),
                "crashes": o.crashes, "torn_crashes": o.torn_crashes, "clock_skew_ms": o.clock_skew_ms,
                "planted_bug": o.planted_bug, "batch_max": o.batch_max, "store": o.store,
                "forward_relay_ms": self.config.forward_relay_ms,
                "max_in_flight": self.config.max_in_flight}

    def format_trace(self) -> list[str]:
        lines = []
        for t, kind, slot, sender, msg in self.trace:
            who = "" if slot is None else f" r{self.nodes[slot].rid}"
            if slot is not None and len(self.by_rid[self.nodes[slot].rid]) > 1:
                who += f"/{slot}"
            frm = "" if sender is None else f" from r{sender}"
            what = "" if msg is None else " " + (
                f"Request({msg.client_id[:4].hex()}/{msg.request_seq})"
                if isinstance(msg, Request) else describe(msg))
            lines.append(f"{t:>9} {kind}{who}{frm}{what}")
        return lines


class _Stopped(Exception):
    """The node stopped inside an Output (storage error, torn crash, its step raised)."""


class SimPorts:
    """A simulated replica's `OutputPorts` for `apply_output`: its MemoryStore, the simulated
    network, the production executor; synchronous (no port ever suspends)."""

    def __init__(self, cluster: SimCluster, node: SimNode) -> None:
        self.cluster = cluster
        self.node = node

    @property
    def blocks(self) -> MemoryStore:
        return self.node.store

    def step(self, event: Any) -> Any:
        out = self.cluster._step_replica(self.node, event)
        if out is None:
            raise _Stopped
        return out

    async def drain(self) -> None:
        pass  # blocks are stored as they are executed

    async def persist(self, records: Any) -> None:
        node, cluster = self.node, self.cluster
        if records and not (node.honest and cluster.opts.planted_bug == "no-persist"):
            node.records.apply(records)
            cluster._store(node, node.store.persist, records)
        cluster._persisted(node, records)

    async def send(self, send: Any) -> None:
        self.cluster._send(self.node, send.to, send.message)

    async def execute(self, blocks: Any, replies: Any) -> None:
        self.cluster._executed(self.node, blocks, replies)
        if self.cluster.config.state_votes:  # as the node: each stored block's roots
            for ex in blocks:
                executed = self.cluster.roots.stored(self.node, ex.seq, ex.block_hash)
                if executed is not None:
                    await apply_output(self.step(executed), self)

    def evidence(self, ev: Any) -> None:
        counts = self.cluster.evidence
        counts[ev.kind] = counts.get(ev.kind, 0) + 1

    def certified(self, c: Any) -> None:
        self.cluster.roots.certified(self.node, c)

    def diverged(self, d: Any) -> None:
        self.cluster.roots.diverged(self.node, d)

    async def client_histories(self, load: Any) -> tuple[int, Any]:
        as_of, hist = self.cluster._store(self.node, self.node.store.client_histories,
                                          load.client_ids)
        counts = self.cluster.counts
        counts["client_loads"] = counts.get("client_loads", 0) + len(hist)
        return as_of, hist

    def applied(self, out: Any) -> None:
        self.cluster._schedule_tick(self.node, out)

    def pruned_answer(self, from_seq: int) -> tuple[int, int]:
        return self.node.shell.pruned_answer(from_seq)

    async def snapshot(self, act: Any) -> Any:
        node, cluster = self.node, self.cluster
        if isinstance(act, ServeSnapshot):
            return cluster._store(node, node.shell.serve, act)
        verdict, done = cluster._store(node, node.shell.check, act)
        if done:
            snapshots.installed(cluster, node)
        return verdict


def run_sim(opts: SimOptions, seed: int, replica_factory: ReplicaFactory | None = None
            ) -> SimResult:
    """Run one seed."""
    return SimCluster(opts, seed, replica_factory).run()
