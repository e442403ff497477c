"""`Node`: one bftnode validator, one trio nursery running the transport, the message pump,
the replica task, the executor task and (when `bftnode.rpc` is available) the RPC server.
Implements the RPC layer's NodeAPI. Composed of one mixin per job: `DriverMixin` (replica
task and the ordering rule, driver.py), `ExecutorMixin` (blocks, executor.py),
`WaitersMixin` (commit waiters, waiters.py), `SubmitMixin` (admission, submit.py),
`ReadsMixin` (the read façade, reads.py), `HealthMixin` (health and read freshness,
health.py), `MetricsMixin` (gauges, metrics.py), `StateRootsMixin` (state certificates,
state_roots.py). This module
holds the state they share (set up in `__init__`) and the lifecycle.
Imports: stdlib, trio, consensus, storage, bftnode.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from consensus import (
    Authenticator,
    Config,
    Ed25519Signer,
    Ed25519Verifier,
    RecoveredState,
    ServeSnapshot,
    digest,
)

from ..config import NodeConfig
from ..genesis import Genesis
from ..keys import NodeKey
from ..logging import PeerFaultLog, get_logger
from ..memory import Trimmer
from ..metrics import NodeMetrics
from .driver import INBOX_SIZE, DriverMixin, _NodePorts
from .errors import StartupError
from .executor import EXEC_QUEUE_GROUPS, ExecutorMixin, InlineCost
from .health import HealthBounds, HealthMixin
from .metrics import MetricsMixin
from .otel import TxSpans
from .otel import from_env as otel_from_env
from .ports import Application, ReplicaFactory, ReplicaLike, Store, Transport
from .reads import ReadsMixin
from .snapshot import SnapshotShell, snapshot_convictions
from .state_roots import StateRootsMixin
from .submit import SubmitMixin
from .traces import PeerTraces
from .verify_cache import CachingVerifier
from .waiters import Waiter, WaitersMixin

EVIDENCE_KEPT = 1000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _resolve_replica_class() -> ReplicaFactory:
    try:
        from consensus import Replica
    except ImportError as exc:
        raise StartupError(f"consensus.Replica is not available: {exc}") from exc
    return Replica


def default_replica_factory(config: Config, index: int, auth: Authenticator,
                            restored: RecoveredState) -> ReplicaLike:
    """The real replica: consensus.Replica."""
    return _resolve_replica_class()(config, index, auth, restored)


def _read_limits(config: NodeConfig | None) -> Any:
    """The RPC's read bounds from the config (None when the RPC package is not installed)."""
    try:
        from bftnode.rpc.limits import ReadLimits
    except ImportError:
        return None
    return ReadLimits.from_config(config) if config is not None else ReadLimits()


class Node(DriverMixin, ExecutorMixin, WaitersMixin, SubmitMixin, ReadsMixin, HealthMixin,
           MetricsMixin, StateRootsMixin):
    """A running (or ready to run) bftnode validator. Implements the RPC layer's NodeAPI."""

    def __init__(
        self,
        *,
        index: int,
        genesis: Genesis,
        key: NodeKey,
        store: Store,
        transport: Transport,
        app: Application,
        config: NodeConfig | None = None,
        client_key: NodeKey | None = None,
        replica_factory: ReplicaFactory | None = None,
        clock_ms: Callable[[], int] = wall_ms,
        tick_ms: int = 10,
        serve_rpc: bool | None = None,
    ) -> None:
        self.index = index
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.domain = genesis.domain
        self.consensus_config = genesis.config()
        if getattr(store, "auth", None) is not None:  # the state tree is on: certify its roots
            self.consensus_config = dataclasses.replace(self.consensus_config, state_votes=True)
        self.key = key
        self.node_id = key.public_key.hex()
        self.store = store
        self.transport = transport
        self.app = app
        self.config = config
        self.metrics = NodeMetrics(index)
        self.log = get_logger(node=index)
        self._fault_log = PeerFaultLog(self.log)
        self._clock_ms = clock_ms
        self._last_now = 0
        self._tick_ms = tick_ms
        self._trimmer = Trimmer()
        self._client_loads = 0
        self._serve_rpc = serve_rpc if serve_rpc is not None else (
            config is not None and config.rpc_port != 0
        )
        # a seam for the testnet's adversary (lying-reads): (method, params, result) -> the
        # result the RPC answers; None in the product
        self.answer_hook: Callable[[str, Any, Any], Any] | None = None
        # shared by the RPC layer (verify_tx) and the replica: each signature verified once
        self.tx_verifier = CachingVerifier(Ed25519Verifier())
        self.auth = Authenticator(
            genesis.domain, Ed25519Signer(key.seed), self.tx_verifier, genesis.replica_keys()
        )
        restored = store.recover(max_clients=self.consensus_config.max_clients)
        factory = replica_factory or default_replica_factory
        self._replica_factory = factory
        self.replica: ReplicaLike = factory(self.consensus_config, index, self.auth, restored)
        # snapshot catch-up and pruning (snapshot.py), serving the store's certificates
        self.snapshots = SnapshotShell(store, self.consensus_config, self.auth, index)
        self._height = restored.last_executed
        self.last_block_hash = restored.last_block_hash
        self.last_block_time_ms = restored.last_time_ms
        self._view_seen = restored.view
        # client side of the embedding API: a local key signing ops submitted via submit_op()
        self._client = client_key or NodeKey.from_seed(digest(b"embedded-client:" + key.seed))
        self._client_seq = time.time_ns() // 1000
        # shared state between the replica task and callers (all on the trio thread)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[Any](INBOX_SIZE)
        self._inbox_bytes = 0  # wire bytes of the peer messages (_Inbound) in the inbox
        self._inline_persist = InlineCost()  # may small persists run on the loop?
        # (window start, peer -> bytes taken in it, the last window's bytes but its f busiest
        # peers'): is the node quiet (driver._inbox_idle)?
        self._in_window: tuple[float, dict[int, int], int] = (0.0, {}, 0)
        self._inline_commit = InlineCost()  # ... and small block commits?
        self._tx_index = config.tx_index if config is not None else True  # tx_attrs
        self._inbox_room = trio.Event()
        self._commit_waiters: dict[bytes, list[Waiter]] = collections.defaultdict(list)
        self._by_client: dict[tuple[bytes, int], set[bytes]] = collections.defaultdict(set)
        # height -> events, ascending heights (OrderedDict: O(1) eviction from the front)
        self._app_events: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._app_events_total = 0
        self._traces: collections.OrderedDict[bytes, str] = collections.OrderedDict()
        self._peer_traces = PeerTraces()  # trace ids peers announced (traces.py)
        self._spans: TxSpans | None = otel_from_env(index, self.chain_id, self.log)  # otel.py
        self._evidence: collections.deque[dict] = collections.deque(maxlen=EVIDENCE_KEPT)
        self._loopback: collections.deque[Any] = collections.deque()
        self._out_counters: dict[str, Any] = {}
        self._in_counters: dict[str, Any] = {}
        self._inbox_depth = self.metrics.queue_depth.labels("inbox")
        self._inbox_bytes_gauge = self.metrics.queue_depth.labels("inbox_bytes")
        self._height_changed = trio.Event()
        # executor pipeline: blocks (and the replies behind them) are executed and committed
        # by their own task, in order, so the replica task steps the next group while the
        # previous one's block commit (fsync) runs; bounded (back-pressure on the replica)
        self._exec_send, self._exec_recv = trio.open_memory_channel[Any](EXEC_QUEUE_GROUPS)
        self._exec_queued = 0
        self._exec_done = 0
        self._exec_progress = trio.Event()
        self._certs_pending: list[Any] = []  # StateCertified waiting for a block write to end
        self._ports = _NodePorts(self)
        # reads: worker threads over snapshots (reads.py), their bounds (the RPC applies
        # them) and the health bounds (health.py)
        self._read_limiter = trio.CapacityLimiter(config.read_workers if config else 2)
        self.read_limits = _read_limits(config)
        self.health_bounds = HealthBounds.from_config(config)
        self.started = trio.Event()
        self.stopped = trio.Event()
        self.rpc_url: str | None = None
        self._cancel: trio.CancelScope | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Closes the store on the way out (after the current write)."""
        try:
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.transport.run)
                    nursery.start_soon(self._pump_incoming)
                    nursery.start_soon(self._executor_task)
                    await nursery.start(self._replica_task)
                    if self._serve_rpc:
                        await self._start_rpc(nursery)
                    self.started.set()
                    self.log.info("node started", chain_id=self.chain_id, height=self._height,
                                  view=self._view_seen, rpc=self.rpc_url)
                    task_status.started()
        finally:
            self.close()
            self.stopped.set()

    async def _snapshot_action(self, act: Any) -> Any:
        """A snapshot action of the replica (consensus.phases.snapshot), in a worker thread;
        after the last page the replica is rebuilt from the store at the snapshot height."""
        if isinstance(act, ServeSnapshot):
            return await trio.to_thread.run_sync(self.snapshots.serve, act)
        await self._drain_executor()  # nothing commits while pages are checked or installed
        verdict, installed = await trio.to_thread.run_sync(self.snapshots.check, act)
        if installed:
            convictions = snapshot_convictions(self.app, self.store)
            if convictions:
                await trio.to_thread.run_sync(self.store.persist, convictions)
            restored = await trio.to_thread.run_sync(
                partial(self.store.recover, max_clients=self.consensus_config.max_clients))
            self.replica = self._replica_factory(self.consensus_config, self.index, self.auth,
                                                 restored)
            self._height = restored.last_executed
            self.last_block_hash = restored.last_block_hash
            self.last_block_time_ms = restored.last_time_ms
            self.metrics.height.set(self._height)
            old, self._height_changed = self._height_changed, trio.Event()
            old.set()
            self.log.info("snapshot installed", height=self._height, peer=act.sender)
        elif verdict.error:
            self.log.warning("snapshot refused", peer=act.sender, reason=verdict.error)
        return verdict

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.snapshots.close()
            self.store.close()
            if self._spans is not None:
                self._spans.shutdown()  # flushes the spans not exported yet
            self.log.info("node stopped", height=self._height)

    async def _start_rpc(self, nursery: trio.Nursery) -> None:
        try:
            from bftnode.rpc.limits import RPCLimits
            from bftnode.rpc.server import RPCStartupError, serve_rpc
        except ImportError as exc:
            self.log.warning("rpc server not available", reason=str(exc))
            return
        assert self.config is not None
        from .rpc_security import rpc_tls_context

        host, port = self.config.rpc_host, self.config.rpc_port
        tls = rpc_tls_context(self.config)
        try:
            url = await nursery.start(partial(serve_rpc, self, host, port,
                                              limits=RPCLimits.from_config(self.config),
                                              tls=tls, insecure=self.config.insecure_rpc))
        except (OSError, RPCStartupError) as exc:
            raise StartupError(f"cannot serve RPC on {host}:{port}: {exc}") from exc
        self.rpc_url = url if isinstance(url, str) else f"http://{host}:{port}"
