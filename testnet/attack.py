"""`python -m testnet attack SCENARIO`: run an attack scenario on a real local testnet and judge
the outcome through JSON-RPC only.

Owns the scenario manifest format (TOML, see `docs/testing.md` and `testnet/scenarios/`), the
attack runner (`run_scenario`) and its verdict (a rich table, or one JSON object with `--json`).

A run: start N real node processes with `testnet.launcher.up` (byzantine strategies per node
come from the manifest), drive a bounded client load (signed put txs, optionally lock clients)
against the honest nodes, apply perturbations on a schedule (kill, kill-hard, pause = SIGSTOP,
resume = SIGCONT, restart, wipe-restart = delete the data dir but keep key/config), then check,
reading only JSON-RPC:
  - honest nodes agree on every block hash up to their common height (and each chain links),
  - every acknowledged tx is in the ledger of every honest node exactly once (`tx` by hash on
    every node, plus a count over every block's tx hashes),
  - progress resumes after the last perturbation (a block commits after it),
  - honest nodes that were not killed on purpose are still running, and catch up,
  - lock safety (testnet/history.py's `check_locks`) when the scenario runs lock clients,
  - evidence is reported by an honest node when the manifest expects it,
  - convictions (evidence committed to the ledger, `evidence` RPC's `convicted`): no honest
    node is ever convicted, every honest node reports the same height for a conviction, and
    the replicas in `expect.convicted` are convicted on every live honest node.
  - one byzantine node must not bloat the honest ones: each honest node's resident-memory
    growth (VmRSS from /proc, per incarnation, from its first sample once it answers RPC) and
    the bytes its log grew by stay within `expect.max_rss_growth_mb` and `expect.max_log_bytes`
    (64 MB and 1 MiB unless the manifest says otherwise; 0 = report only), with every node's
    CPU seconds reported; a node that dies during start-up is a failed verdict too.
  - a `relay-poison` validator's txs are on every honest ledger, each failing alike, and a
    `[client_attack]` hostile client's burst and RPC calls are judged (testnet/client_attack.py).
It also measures, for every perturbation (and for a byzantine primary from the start), the time
from the fault to the next commit.

Imports: stdlib, httpx, httpx_ws, rich, bftnode (keys, app.ops, client), consensus, testnet.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from bftnode.app import ops
from bftnode.client import BadAnswer, ClientError, RPCCallError
from bftnode.client.core import (
    load_refusal_wait,
    load_refused,
    sub_message,
    subscribe_request,
    tx_param,
    ws_url,
)
from bftnode.client.sync import rpc_batch, rpc_call
from bftnode.keys import NodeKey
from bftnode.rpc.errors import TIMEOUT as RPC_TIMEOUT
from consensus import Request, request_digest, sign_request
from testnet import launcher, links
from testnet.bench import proc_cpu_s, proc_rss_mb
from testnet.checkers import find_divergence
from testnet.netns import NetnsError
from testnet.ports import free_port_base

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
ACTIONS = ("kill", "kill-hard", "pause", "resume", "restart", "wipe-restart", "partition",
           "heal")
DEFAULT_CONSENSUS = {"timeout_request_ms": 1000, "timeout_view_change_ms": 1000,
                     "heartbeat_ms": 200}
POLL_S = 0.05
RSS_SAMPLE_S = 0.25  # resource samples of every node (RSS, CPU, log size)
IDLE_S = 2.0  # an events subscription silent this long has sent every past event
OK, VIOLATED, INFO, SKIPPED = "ok", "violated", "info", "skipped"


class ScenarioError(ValueError):
    """A scenario manifest is malformed (the message names the file and the field)."""


# ---------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Perturbation:
    at_s: float
    action: str
    node: int | str  # an index, "primary", "backup", or "same" (the previous target)
    duration_s: float = 0.0  # pause: resume after this long (0 = stay paused until "resume")
    # and not before this many txs are acknowledged (in the middle of a burst); applied anyway,
    # with a note, once the load's duration_s is over
    after_acked: int = 0


@dataclass(frozen=True)
class Load:
    clients: int = 2
    txs: int = 40  # put txs over all clients (a bound, not a target)
    rate: float = 10.0  # tx/s over all clients
    duration_s: float = 15.0  # stop submitting after this long
    commit_timeout_s: float = 20.0  # per broadcast_tx_commit call
    lock_clients: int = 0  # clients cycling lease grant / lock try-acquire / release
    value_bytes: int = 0  # size of each put's value (0: a short "v<j>")
    # txs per JSON-RPC batch array of broadcast_tx_commit (1: one call at a time); a client
    # sends its next array when every tx of the last one is acknowledged or given up
    batch: int = 1


@dataclass(frozen=True)
class Expect:
    progress: bool = True  # a block must commit after the last perturbation
    progress_timeout_s: float = 30.0
    settle_s: float = 30.0  # honest running nodes must reach the same height within this
    evidence: bool = False  # some honest node must report evidence
    convicted: tuple[int, ...] = ()  # replicas every live honest node must report convicted
    min_acked: int = 1  # at least this many txs acknowledged (0 = none required)
    # one byzantine node must not bloat the honest ones: most resident-memory growth of an
    # honest node (VmRSS, from its first sample once it answers RPC) and most log output it
    # may write during the run (0 = measured and reported only)
    max_rss_growth_mb: float = 64.0
    max_log_bytes: int = 1024 * 1024
    max_view: int = -1  # the highest view an honest node may reach (-1 = report only)
    # a fault followed by a view change: its first commit at most this long after an honest
    # node was first seen in the new view (0 = report only)
    max_commit_after_view_change_s: float = 0.0
    # honest put latency (submit -> commit acknowledged) against the same scenario without
    # its byzantine nodes (`--baseline`): p50 and p99 at most this many times theirs (0 = none)
    max_p50_ratio: float = 0.0
    max_p99_ratio: float = 0.0
    # no client load: heartbeat blocks within this long of every fault and of the heal, judged
    # before any probe tx is sent (testnet/idle_check.py; 0 = not checked)
    idle_block_s: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    nodes: int = 4
    byzantine: dict[int, list[str]] = field(default_factory=dict)
    consensus: dict[str, int] = field(default_factory=dict)
    load: Load = field(default_factory=Load)
    perturbations: tuple[Perturbation, ...] = ()
    expect: Expect = field(default_factory=Expect)
    path: str = ""
    client_attack: Any = None  # testnet.client_attack.ClientAttack: a hostile client too

    @property
    def f(self) -> int:
        return (self.nodes - 1) // 3


def _typed(where: str, table: dict, cls: type, floats: tuple[str, ...]) -> Any:
    known = set(cls.__dataclass_fields__)
    extra = set(table) - known
    if extra:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(extra)}; known: {sorted(known)}")
    kw = {}
    for k, v in table.items():
        default = cls.__dataclass_fields__[k].default
        want = float if k in floats else type(default)
        if want is tuple and isinstance(v, list) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in v
        ):
            kw[k] = tuple(v)  # a TOML list of integers (node indexes)
        elif want is float and isinstance(v, int | float) and not isinstance(v, bool):
            kw[k] = float(v)
        elif isinstance(v, want) and not (want is int and isinstance(v, bool)):
            kw[k] = v
        else:
            raise ScenarioError(f"{where}: field {k!r} must be {want.__name__}, got {v!r}")
    return cls(**kw)


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """TOML text -> Scenario; ScenarioError names the file and the bad field."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    known = {"name", "description", "nodes", "byzantine", "consensus", "load", "perturbation",
             "expect", "client_attack"}
    extra = set(d) - known
    if extra:
        raise ScenarioError(f"{path}: unknown field(s) {sorted(extra)}; known: {sorted(known)}")
    name = d.get("name") or Path(path).stem
    nodes = d.get("nodes", 4)
    if not isinstance(nodes, int) or nodes < 4:
        raise ScenarioError(f"{path}: 'nodes' must be an integer >= 4 (3f+1), got {nodes!r}")
    byz: dict[int, list[str]] = {}
    for k, v in (d.get("byzantine") or {}).items():
        if not str(k).isdigit() or not 0 <= int(k) < nodes:
            raise ScenarioError(f"{path}: byzantine key {k!r} must be a node index 0..{nodes - 1}")
        specs = [v] if isinstance(v, str) else v
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise ScenarioError(f"{path}: byzantine.{k} must be a strategy or a list of them")
        try:
            from testnet.adversary import parse_strategy

            for s in specs:
                parse_strategy(s)
        except ValueError as exc:
            raise ScenarioError(f"{path}: byzantine.{k}: {exc}") from None
        byz[int(k)] = list(specs)
    if len(byz) > (nodes - 1) // 3:
        print(f"warning: {path}: {len(byz)} byzantine nodes exceed f = {(nodes - 1) // 3}",
              file=sys.stderr)
    cons = d.get("consensus") or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in cons.values()):
        raise ScenarioError(f"{path}: [consensus] values must be integers")
    load = _typed(f"{path} [load]", d.get("load") or {}, Load,
                  ("rate", "duration_s", "commit_timeout_s"))
    expect = _typed(f"{path} [expect]", d.get("expect") or {}, Expect,
                    ("progress_timeout_s", "settle_s", "max_rss_growth_mb",
                     "max_commit_after_view_change_s", "max_p50_ratio", "max_p99_ratio",
                     "idle_block_s"))
    if load.batch < 1 or load.value_bytes < 0:
        raise ScenarioError(f"{path} [load]: batch must be >= 1 and value_bytes >= 0")
    perts = []
    for i, p in enumerate(d.get("perturbation") or []):
        where = f"{path} [[perturbation]] #{i + 1}"
        if not isinstance(p, dict):
            raise ScenarioError(f"{where}: expected a table")
        action = p.get("action")
        if action not in ACTIONS:
            raise ScenarioError(f"{where}: action {action!r} not one of {', '.join(ACTIONS)}")
        node = p.get("node", "primary")
        if isinstance(node, bool) or not (
            (isinstance(node, int) and 0 <= node < nodes)
            or node in ("primary", "backup", "same")
        ):
            raise ScenarioError(f"{where}: node {node!r} must be 0..{nodes - 1}, 'primary', "
                                "'backup' or 'same'")
        at = p.get("at_s")
        if not isinstance(at, int | float) or isinstance(at, bool) or at < 0:
            raise ScenarioError(f"{where}: at_s must be a number >= 0, got {at!r}")
        dur = p.get("duration_s", 0.0)
        if not isinstance(dur, int | float) or dur < 0:
            raise ScenarioError(f"{where}: duration_s must be a number >= 0")
        after = p.get("after_acked", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ScenarioError(f"{where}: after_acked must be an integer >= 0")
        extra = set(p) - {"at_s", "action", "node", "duration_s", "after_acked"}
        if extra:
            raise ScenarioError(f"{where}: unknown field(s) {sorted(extra)}")
        perts.append(Perturbation(float(at), action, node, float(dur), after))
    perts.sort(key=lambda p: p.at_s)
    hostile = None
    if "client_attack" in d:
        from testnet.client_attack import ClientAttack

        hostile = _typed(f"{path} [client_attack]", d["client_attack"], ClientAttack,
                         ("start_s", "deadline_s"))
    return Scenario(name=name, description=d.get("description", ""), nodes=nodes, byzantine=byz,
                    consensus={**DEFAULT_CONSENSUS, **cons}, load=load,
                    perturbations=tuple(perts), expect=expect, path=path, client_attack=hostile)


def load_scenario(name_or_path: str) -> Scenario:
    """A path to a TOML file, or the name of a shipped scenario (testnet/scenarios/NAME.toml)."""
    p = Path(name_or_path)
    if not p.exists():
        p = SCENARIO_DIR / (name_or_path if name_or_path.endswith(".toml")
                            else f"{name_or_path}.toml")
    if not p.exists():
        raise ScenarioError(f"no scenario {name_or_path!r} (not a file; shipped: "
                            f"{', '.join(shipped_scenarios())})")
    return parse_scenario(p.read_text(), str(p))


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


# ---------------------------------------------------------------- JSON-RPC helpers


def call(http: httpx.Client, url: str, method: str, params: dict | None = None,
         timeout: float = 3.0) -> Any:
    """One JSON-RPC call (the client core's request and parser); raises RPCCallError (the
    node's error answer; BadAnswer, also a ValueError, when it is not JSON-RPC) or httpx
    errors."""
    return rpc_call(http, url, method, params, timeout)


# ---------------------------------------------------------------- the run


@dataclass
class Fault:
    t: float  # seconds since the run started (monotonic)
    action: str
    node: int
    height: int  # max honest height seen when the fault was applied
    next_commit_s: float | None = None  # fault -> first commit of a block proposed after it
    next_height: int | None = None  # that block
    next_view: int | None = None  # and its view (a new view after a primary failure)
    note: str = ""
    view: int = 0  # the lowest view a live honest node was seen in when the fault was applied
    view_change_s: float | None = None  # fault -> an honest node first seen in next_view
    commit_after_view_change_s: float | None = None  # that -> the next commit
    # the primary killed: a put sent at that moment to a backup (not the next primary) ->
    # acknowledged by broadcast_tx_commit (committed); the failover a client sees
    probe_commit_s: float | None = None
    probe_node: int | None = None


@dataclass
class Usage:
    """What one node used during the run: resident memory (per incarnation: its first sample
    once it answers RPC, and its most), log bytes written, CPU seconds."""

    pid: int | None = None
    rss_start_mb: float | None = None
    rss_max_mb: float | None = None
    rss_growth_mb: float = 0.0  # the largest max - start over its incarnations
    log_start: int = 0
    log_bytes: int = 0
    cpu_done_s: float = 0.0  # CPU of its earlier incarnations
    cpu_s: float = 0.0

    def sample(self, pid: int) -> None:
        if pid != self.pid:
            self.cpu_done_s, self.pid = self.cpu_s, pid
            self.rss_start_mb = None
        rss = proc_rss_mb(pid)
        if rss is None:
            return
        if self.rss_start_mb is None:
            self.rss_start_mb = rss
        self.rss_max_mb = max(rss, self.rss_max_mb or 0.0)
        self.rss_growth_mb = max(self.rss_growth_mb, round(rss - self.rss_start_mb, 1))
        cpu = proc_cpu_s(pid)
        if cpu is not None:
            self.cpu_s = round(self.cpu_done_s + cpu, 2)

    def report(self) -> dict[str, Any]:
        return {"rss_start_mb": self.rss_start_mb, "rss_max_mb": self.rss_max_mb,
                "rss_growth_mb": self.rss_growth_mb, "log_bytes": self.log_bytes,
                "cpu_s": self.cpu_s}


class Run:
    """State of one scenario run (threads: load clients, height monitors; main: schedule)."""

    def __init__(self, sc: Scenario, d: Path, manifest: dict[str, Any], *,
                 fake_acks: int = 0) -> None:
        self.sc = sc
        self.d = d
        self.m = manifest
        self.n = sc.nodes
        self.honest = [i for i in range(self.n) if i not in sc.byzantine]
        self.urls = [nd["rpc"] for nd in manifest["nodes"]]
        self.t0 = time.monotonic()
        self.t0_wall_ms = time.time() * 1000.0  # maps run time to block times (same host)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.down: set[int] = set()  # killed on purpose (not restarted yet)
        self.paused: set[int] = set()
        self.cut_off: set[int] = set()  # partitioned away (see testnet/adversary/link_faults.py)
        self.acked: dict[bytes, dict] = {}  # tx hash -> {height, node, t}
        self.rejected: Counter[str] = Counter()
        self.submit_errors: Counter[str] = Counter()
        self.submitted = 0
        self.heights: dict[int, list[tuple[float, int]]] = {i: [] for i in range(self.n)}
        self.views: dict[int, int] = {}
        self.view_log: list[tuple[float, int, int]] = []  # (t, node, view) at each change
        self.put_lat_ms: list[float] = []  # put load: submit -> commit acknowledged
        self.faults: list[Fault] = []
        self.mlock = threading.Lock()  # testnet.json read-modify-write (kills vs restarts)
        self.starting: list[threading.Thread] = []
        self.probes: list[threading.Thread] = []
        self.start_failures: list[str] = []
        self.lock_ops: Counter[str] = Counter()
        self.fake_acks = fake_acks
        self.report_heights: dict[str, int] = {}
        self.evidence: dict[str, Any] = {}
        self.usage = {i: Usage(log_start=_size(nd["log"])) for i, nd in enumerate(manifest["nodes"])}
        self.sampling = threading.Event()  # set: stop sampling (after the final checks)
        self.hostile: Any = None  # testnet.client_attack.HostileClient ([client_attack])
        self.poison: dict[str, Any] = {}  # relay-poison txs on the ledger (poison_checks)
        self.relay: dict[str, Any] = {}  # honest nodes' drops of relayed requests (health)
        self.view_changes: dict[str, Any] = {}  # live nodes' view changes by reason (health)
        self.ledger_txs = 0  # txs on the longest honest chain read at the end
        self.status0 = self._first_status()
        self.domain = bytes.fromhex(self.status0["domain"])

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _first_status(self) -> dict:
        """`status` of the first honest node that answers (one may have died already)."""
        err: Exception | None = None
        with httpx.Client() as http:
            for i in self.honest:
                try:
                    return call(http, self.urls[i], "status")
                except httpx.HTTPError as exc:
                    err = exc
        raise httpx.ConnectError(f"no honest node answers status: {err}")

    def live_honest(self) -> list[int]:
        with self.lock:
            return self.live_honest_unlocked()

    def live_honest_unlocked(self) -> list[int]:
        return [i for i in self.honest if i not in self.down and i not in self.paused]

    # -- height monitor: one thread per node
    def monitor(self, i: int) -> None:
        with httpx.Client() as http:
            last = -1
            while not self.stop.is_set():
                if i in self.down or i in self.paused:
                    time.sleep(POLL_S)
                    continue
                try:
                    st = call(http, self.urls[i], "status", timeout=0.5)
                    h = int(st["height"])
                    if h != last:
                        with self.lock:
                            self.heights[i].append((self.now(), h))
                        last = h
                    v = int(st.get("view", 0))
                    if self.views.get(i) != v:
                        with self.lock:
                            self.view_log.append((self.now(), i, v))
                    self.views[i] = v
                except Exception:
                    pass
                time.sleep(POLL_S)

    def max_honest_height(self) -> int:
        with self.lock:
            return max((hs[-1][1] for i, hs in self.heights.items() if i in self.honest and hs),
                       default=0)

    def first_commit_after(self, t: float, height: int) -> float | None:
        """Earliest time (> t) an honest node was seen above `height`."""
        with self.lock:
            ts = [tt for i in self.honest for tt, h in self.heights[i] if tt > t and h > height]
        return min(ts) if ts else None

    # -- resources: one thread samples every node
    def sample_usage(self) -> None:
        """Every RSS_SAMPLE_S: each running node's resident memory and CPU, and the bytes its
        log grew by. A node stopped or restarting on purpose is skipped until it answers."""
        while True:
            for i, u in self.usage.items():
                with self.lock:
                    away = i in self.down
                pid = None if away else self.pid(i)
                if pid and launcher.pid_alive(pid):
                    u.sample(pid)
                u.log_bytes = max(u.log_bytes, _size(self.m["nodes"][i]["log"]) - u.log_start)
            if self.sampling.wait(RSS_SAMPLE_S):
                return

    # -- client load
    def put_client(self, c: int) -> None:
        """One put client: its share of `load.txs`, `load.batch` txs at a time (one JSON-RPC
        batch array of broadcast_tx_commit), paced to `load.rate` (0: as fast as it goes)."""
        sc = self.sc
        per_client = sc.load.txs // max(1, sc.load.clients) + (c < sc.load.txs % sc.load.clients)
        batch = sc.load.batch
        interval = sc.load.clients * batch / sc.load.rate if sc.load.rate > 0 else 0.0
        signer = NodeKey.from_seed(os.urandom(32)).signer()
        pad = b"\xa5" * sc.load.value_bytes

        def signed(j: int) -> Request:
            value = (f"v{j}".encode() + pad)[:sc.load.value_bytes] if pad else f"v{j}".encode()
            op = ops.put(f"attack/{c}/{j}".encode(), value)
            return sign_request(self.domain, signer, Request(signer.public_key, j + 1, op))

        with httpx.Client() as http:
            nxt = time.monotonic()
            for j in range(0, per_client, batch):
                if self.stop.is_set() or self.now() > sc.load.duration_s:
                    return
                reqs = [signed(x) for x in range(j, min(per_client, j + batch))]
                t = time.monotonic()
                if batch == 1:
                    acked = 1 if self.submit(http, reqs[0], c + j) is not None else 0
                    lat = [(time.monotonic() - t) * 1000.0] * acked
                else:
                    lat = [(at - t) * 1000.0 for at in self.submit_batch(http, reqs, c + j)]
                with self.lock:
                    self.put_lat_ms += lat
                nxt += interval
                delay = nxt - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)

    def submit_batch(self, http: httpx.Client, reqs: list[Request], rot: int) -> list[float]:
        """`submit` for several signed txs at once: one JSON-RPC batch array of
        broadcast_tx_commit to a live honest node; the txs it did not acknowledge go (the SAME
        signed bytes) in the next array to the next live honest node. Returns when each
        was acknowledged (time.monotonic()), for the acknowledged ones."""
        timeout = self.sc.load.commit_timeout_s
        todo = {request_digest(r): tx_param(r) for r in reqs}
        with self.lock:
            self.submitted += len(todo)
        done: list[float] = []
        end = time.monotonic() + 2 * timeout
        k = rot
        while todo and time.monotonic() < end and not self.stop.is_set():
            live = self.live_honest()
            if not live:
                self.stop.wait(0.2)
                continue
            i = live[k % len(live)]
            k += 1
            hashes = list(todo)
            calls = [("broadcast_tx_commit", {"tx": todo[h], "timeout": timeout}) for h in hashes]
            try:
                answers = rpc_batch(http, self.urls[i], calls, timeout=timeout + 5)
            except (httpx.HTTPError, ClientError) as exc:
                with self.lock:
                    self.submit_errors[type(exc).__name__] += 1
                self.stop.wait(0.1)
                continue
            idx, pause = load_refused(answers)  # the same txs again after the wait
            refused = set(idx)
            for j, (h, ans) in enumerate(zip(hashes, answers, strict=True)):
                if isinstance(ans, BadAnswer):  # no answer for this one: send it again
                    continue
                if not isinstance(ans, RPCCallError):
                    res = ans or {}
                    with self.lock:
                        self.acked[h] = {"height": res.get("height"), "node": i, "t": self.now()}
                    done.append(time.monotonic())
                    del todo[h]
                    continue
                msg = f"broadcast_tx_commit: {ans.message}"
                if j not in refused and not _retry_later(ans.code, msg):
                    with self.lock:
                        self.rejected[msg[:80]] += 1
                    del todo[h]
                else:  # not committed in time, or refused for load: the same tx again
                    with self.lock:
                        self.submit_errors[msg[:60]] += 1
            if pause:
                self.stop.wait(pause)
        return done

    def submit(self, http: httpx.Client, req: Request, rot: int,
               deadline_s: float | None = None) -> dict | None:
        """broadcast_tx_commit the SAME signed tx to live honest nodes in turn until one
        acknowledges it (a retry is safe: the chain executes (client, seq) at most once)."""
        tx = tx_param(req)
        h = request_digest(req)
        with self.lock:
            self.submitted += 1
        timeout = self.sc.load.commit_timeout_s
        end = time.monotonic() + (deadline_s if deadline_s is not None else 2 * timeout)
        k = rot
        while time.monotonic() < end and not self.stop.is_set():
            live = self.live_honest()
            if not live:
                self.stop.wait(0.2)
                continue
            i = live[k % len(live)]
            k += 1
            try:
                res = call(http, self.urls[i], "broadcast_tx_commit",
                           {"tx": tx, "timeout": timeout}, timeout=timeout + 5)
            except (httpx.HTTPError, BadAnswer) as exc:
                with self.lock:
                    self.submit_errors[type(exc).__name__] += 1
                self.stop.wait(0.1)
                continue
            except RPCCallError as exc:
                msg = f"broadcast_tx_commit: {exc.message}"
                wait = load_refusal_wait(exc)
                if wait is None and exc.code is not None and not _retry_later(exc.code, msg):
                    with self.lock:
                        self.rejected[msg[:80]] += 1
                    return None
                with self.lock:
                    self.submit_errors[msg[:60]] += 1
                if wait:  # refused for load: the same tx after the node's retry_after
                    self.stop.wait(wait)
                continue
            with self.lock:
                self.acked[h] = {"height": res.get("height"), "node": i, "t": self.now()}
            return res
        return None

    def lock_client(self, c: int) -> None:
        """Cycle: grant a lease, try-acquire lock L until granted, hold briefly, release (every
        third hold is abandoned so the lease expires and the lock is lost)."""
        sc = self.sc
        signer = NodeKey.from_seed(os.urandom(32)).signer()
        seq = 0
        with httpx.Client() as http:
            def do(op: bytes) -> dict | None:
                nonlocal seq
                seq += 1
                req = sign_request(self.domain, signer, Request(signer.public_key, seq, op))
                res = self.submit(http, req, c + seq)
                if res is None or res.get("code", 0) != 0:
                    return None
                r = res.get("result")
                return r if isinstance(r, dict) else {}

            cycle = 0
            while not self.stop.is_set() and self.now() < sc.load.duration_s:
                cycle += 1
                lease = do(ops.lease_grant(ttl_ms=1500))
                if not lease or "id" not in lease:
                    continue
                self.lock_ops["lease_grant"] += 1
                token = None
                until = self.now() + 3.0
                while token is None and self.now() < until and not self.stop.is_set():
                    r = do(ops.lock_try_acquire(b"L", lease["id"]))
                    if r and r.get("acquired"):
                        token = r["token"]
                        self.lock_ops["acquired"] += 1
                    else:
                        self.stop.wait(0.1)
                if token is None:
                    continue
                self.stop.wait(0.1)
                if cycle % 3 == 0:
                    self.lock_ops["abandoned"] += 1  # let the lease expire
                    continue
                if do(ops.lock_release(b"L", token)) is not None:
                    self.lock_ops["released"] += 1
                do(ops.lease_revoke(lease["id"]))

    # -- perturbations
    def resolve(self, p: Perturbation, prev: int | None) -> int:
        if isinstance(p.node, int):
            return p.node
        if p.node == "same":
            if prev is None:
                raise ScenarioError(f"{self.sc.path}: node = 'same' on the first perturbation")
            return prev
        primary = self.current_primary()
        if p.node == "primary":
            return primary
        cands = [i for i in self.live_honest() if i != primary]
        return cands[-1] if cands else (primary + 1) % self.n

    def current_primary(self) -> int:
        """The primary most live honest nodes report (JSON-RPC `status`)."""
        votes: Counter[int] = Counter()
        with httpx.Client() as http:
            for i in self.live_honest():
                with contextlib.suppress(Exception):
                    votes[int(call(http, self.urls[i], "status", timeout=1.0)["primary"])] += 1
        if votes:
            return votes.most_common(1)[0][0]
        with self.lock:  # no answer in time (a loaded node): the monitor's latest views
            seen = [v for j, v in self.views.items() if j in self.live_honest_unlocked()]
        return max(seen) % self.n if seen else 0

    def pid(self, i: int) -> int | None:
        with self.mlock:
            return launcher.read_manifest(self.d)["nodes"][i].get("pid")

    def start_node(self, i: int) -> None:
        """Start node i again WITHOUT blocking the schedule: the process is spawned (manifest
        updated under `mlock`) and a thread waits until it answers RPC before counting it as
        live again. A start that fails is recorded (the node then counts as crashed)."""
        with self.mlock:
            m = launcher.read_manifest(self.d)
            nd = m["nodes"][i]
            launcher.stop_pid(nd.get("pid"), nd["home"])
            nd["pid"] = launcher.start_node_process(nd)
            launcher.write_manifest(self.d, m)

        def ready() -> None:
            try:
                launcher.wait_ready(m, [i])
            except launcher.LauncherError as exc:
                self.start_failures.append(f"node{i}: {str(exc)[:300]}")
                return
            with self.lock:
                self.down.discard(i)
                self.paused.discard(i)

        t = threading.Thread(target=ready, daemon=True)
        t.start()
        self.starting.append(t)

    def apply(self, p: Perturbation, i: int) -> str:
        nd = self.m["nodes"][i]
        if p.action in ("kill", "kill-hard"):
            with self.lock:
                self.down.add(i)
            with self.mlock:
                launcher.kill(self.d, i, hard=p.action == "kill-hard")
        elif p.action == "pause":
            pid = self.pid(i)
            if not pid:
                return "not running: nothing to pause"
            with self.lock:
                self.paused.add(i)
            os.kill(pid, signal.SIGSTOP)
        elif p.action == "resume":
            self.resume(i)
        elif p.action == "restart":
            with self.lock:
                self.down.add(i)
            self.start_node(i)
        elif p.action == "wipe-restart":
            with self.lock:
                self.down.add(i)
            with self.mlock:
                launcher.kill(self.d, i, hard=True)
            data = Path(nd["home"]) / "data"
            with contextlib.suppress(Exception):
                from bftnode.config import load_config

                data = load_config(nd["home"]).data_path
            shutil.rmtree(data, ignore_errors=True)
            self.start_node(i)
            return f"data dir {data} deleted"
        elif p.action == "partition":
            others = [x["index"] for x in self.m["nodes"] if x["index"] != i]
            with self.lock:
                self.paused.add(i)  # unreachable: no load, no progress expected from it
                self.cut_off.add(i)
            links.partition(self.d, [[i], others])
            return f"node{i} cut off from {others}"
        elif p.action == "heal":
            links.heal(self.d)
            with self.lock:
                self.paused -= self.cut_off
                self.cut_off.clear()
        return ""

    def resume(self, i: int) -> None:
        pid = self.pid(i)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        with self.lock:
            self.paused.discard(i)

    def schedule(self) -> None:
        pending: list[tuple[float, Perturbation, int | None]] = [
            (p.at_s, p, None) for p in self.sc.perturbations]
        prev: int | None = None
        while pending:
            pending.sort(key=lambda x: x[0])
            at, p, fixed = pending.pop(0)
            delay = at - self.now()
            if delay > 0:
                time.sleep(delay)  # the scenario's schedule, not a wait for a condition
            late = ""
            if p.after_acked:  # wait (bounded by the load's duration) for the acks
                while len(self.acked) < p.after_acked and self.now() < self.sc.load.duration_s:
                    self.stop.wait(POLL_S)
                late = (f"after {len(self.acked)} acked" if len(self.acked) >= p.after_acked
                        else f"only {len(self.acked)} of {p.after_acked} acked by the load's end")
            i = fixed if fixed is not None else self.resolve(p, prev)
            prev = i
            h = self.max_honest_height()
            with self.lock:  # the lowest: a view change under way at the fault still counts
                v = min((self.views.get(j, 0) for j in self.live_honest_unlocked()), default=0)
            t = self.now()
            note = self.apply(p, i)
            if late:
                note = (note + "; " if note else "") + late
            elif t - at > 0.5:
                note = (note + "; " if note else "") + f"planned at {at:.1f}s"
            self.faults.append(Fault(t, p.action, i, h, note=note, view=v))
            if p.action in ("kill", "kill-hard") and p.node == "primary":
                probe = threading.Thread(target=self.probe_put, args=(self.faults[-1],),
                                         daemon=True)
                probe.start()
                self.probes.append(probe)
            if p.action in ("pause", "partition") and p.duration_s > 0:
                back = t + p.duration_s  # the full duration even if this one started late
                undo = "resume" if p.action == "pause" else "heal"
                pending.append((back, Perturbation(back, undo, i), i))

    def probe_put(self, fl: Fault) -> None:
        """The primary was just killed: send one fresh put to a live backup that is not the
        next primary in the rotation (it would hold the put itself) and time the kill -> its
        broadcast_tx_commit answer. Only that node is asked (no retry elsewhere)."""
        n = self.n
        live = [j for j in self.live_honest() if j != fl.node]
        others = [j for j in live if j != (fl.node + 1) % n] or live
        if not others:
            return
        fl.probe_node = others[0]
        signer = NodeKey.from_seed(os.urandom(32)).signer()
        req = sign_request(self.domain, signer, Request(
            signer.public_key, 1, ops.put(b"attack/failover-probe", b"x")))
        timeout = max(10.0, self.sc.load.commit_timeout_s)
        with httpx.Client() as http:
            try:
                call(http, self.urls[fl.probe_node], "broadcast_tx_commit",
                     {"tx": tx_param(req), "timeout": timeout}, timeout=timeout + 5)
            except Exception as exc:  # reported as no figure, with why
                fl.note = (fl.note + "; " if fl.note else "") + f"probe: {exc!r}"[:120]
                return
        fl.probe_commit_s = round(self.now() - fl.t, 3)

    # -- after the schedule
    def wait_progress(self, after_t: float, after_h: int, timeout: float) -> float | None:
        """Submit probe txs until a block commits after `after_t`; time of that commit."""
        signer = NodeKey.from_seed(os.urandom(32)).signer()
        end = time.monotonic() + timeout
        seq = 0
        with httpx.Client() as http:
            while time.monotonic() < end:
                t = self.first_commit_after(after_t, after_h)
                if t is not None:
                    return t
                seq += 1
                req = sign_request(self.domain, signer, Request(
                    signer.public_key, seq, ops.put(b"attack/probe", str(seq).encode())))
                self.submit(http, req, seq, deadline_s=max(0.5, end - time.monotonic()))
                time.sleep(POLL_S)
        return self.first_commit_after(after_t, after_h)


def _retry_later(code: Any, msg: str) -> bool:
    """A failed broadcast_tx_commit worth sending again (the same signed tx): the node did
    not see the commit in time (RPC_TIMEOUT: "not committed within ...", it may still commit)
    or it timed out some other way; a refusal for load (`load_refusal_wait`) is sent again
    after its wait; anything else is the node's refusal."""
    return code == RPC_TIMEOUT or "timeout" in msg.lower() or "timed out" in msg.lower()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ---------------------------------------------------------------- checks (JSON-RPC only)


@dataclass
class Check:
    name: str
    result: str
    detail: str = ""


def headers(http: httpx.Client, url: str, upto: int) -> dict[int, dict]:
    """Block headers 1..upto (hash, prev_hash, tx_hashes) via `blockchain`."""
    out: dict[int, dict] = {}
    hi = upto
    while hi >= 1:
        res = call(http, url, "blockchain", {"min_height": max(1, hi - 99), "max_height": hi},
                   timeout=10)
        blocks = res.get("blocks", [])
        if not blocks:
            break
        for b in blocks:
            out[int(b["height"])] = b
        hi = min(out) - 1
    return out


def check_agreement(chains: dict[int, dict[int, dict]], common: int) -> Check:
    logs = {i: {h: bytes.fromhex(b["hash"]) for h, b in c.items() if h <= common}
            for i, c in chains.items()}
    div = find_divergence(logs)
    problems = [f"height {s}: " + ", ".join(f"node{i}={h.hex()[:10]}" for i, h in sorted(v.items()))
                for s, v in div[:3]]
    for i, c in chains.items():
        missing = [h for h in range(1, common + 1) if h not in c]
        if missing:
            problems.append(f"node{i} lacks blocks {missing[:5]}")
        for h in range(2, common + 1):
            if h in c and h - 1 in c and c[h]["prev_hash"] != c[h - 1]["hash"]:
                problems.append(f"node{i} block {h} prev_hash does not link block {h - 1}")
                break
    if problems:
        return Check("agreement", VIOLATED, "; ".join(problems))
    return Check("agreement", OK, f"{len(chains)} honest nodes, same hash at heights 1..{common}")


def check_acked(http: httpx.Client, urls: dict[int, str], chains: dict[int, dict[int, dict]],
                acked: list[bytes]) -> Check:
    """Every acknowledged tx: found by `tx` on every honest node at the same place, and exactly
    once in that node's blocks."""
    problems: list[str] = []
    counts = {i: Counter(th for b in c.values() for th in b.get("tx_hashes", []))
              for i, c in chains.items()}
    heights = {i: max(c, default=0) for i, c in chains.items()}
    found_at = {i: tx_places(http, url, [h.hex() for h in acked]) for i, url in urls.items()}
    for h in acked:
        hx = h.hex()
        where: dict[int, tuple] = {}
        for i in urls:
            t = found_at[i].get(hx, "?")
            if isinstance(t, str):
                problems.append(f"tx {hx[:10]} on node{i}: {t}")
                continue
            where[i] = t  # type: ignore[assignment]
            if where.get(i) is not None and where[i][0] <= heights[i] and counts[i][hx] != 1:
                problems.append(f"tx {hx[:10]} appears {counts[i][hx]} times in node{i}'s blocks")
        found = {v for v in where.values() if v is not None}
        if not found:
            problems.append(f"acknowledged tx {hx[:10]} is in no honest node's ledger")
        elif len(found) > 1:
            problems.append(f"tx {hx[:10]} at different places: {where}")
        else:
            (pos,) = found
            absent = [i for i, v in where.items() if v is None and heights[i] >= pos[0]]
            if absent:
                problems.append(f"tx {hx[:10]} (height {pos[0]}) missing on nodes {absent}")
    if problems:
        extra = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
        return Check("acked txs exactly once", VIOLATED, "; ".join(problems[:4]) + extra)
    return Check("acked txs exactly once", OK,
                 f"{len(acked)} acknowledged txs, each once on {len(urls)} honest nodes")


TX_LOOKUPS_PER_CALL = 200  # `tx` calls per JSON-RPC batch array (the RPC takes up to 1,000)


def tx_places(http: httpx.Client, url: str, hashes: list[str]) -> dict[str, Any]:
    """`tx` for each hash on one node, in JSON-RPC batch arrays: hash -> (height, index), None
    when the node does not have it (an error answer), or a string saying why it is unknown."""
    out: dict[str, Any] = {}
    for k in range(0, len(hashes), TX_LOOKUPS_PER_CALL):
        part = hashes[k:k + TX_LOOKUPS_PER_CALL]
        try:
            answers = rpc_batch(http, url, [("tx", {"hash": hx}) for hx in part], timeout=30)
        except Exception as exc:
            out.update({hx: type(exc).__name__ for hx in part})
            continue
        for hx, r in zip(part, answers, strict=True):
            if not isinstance(r, BadAnswer):  # no answer for it: unknown ("?")
                out[hx] = None if isinstance(r, RPCCallError) or not r else (
                    r["height"], r["index"])
    return out


def lock_history(url: str, upto: int, timeout: float = 20.0) -> list[dict]:
    """App events 1..upto from a `subscribe {topic: events}` WebSocket, as history lines."""
    from types import SimpleNamespace

    from httpx_ws import connect_ws

    from testnet.history import events_to_history

    evs: list[Any] = []
    end = time.monotonic() + timeout
    with httpx.Client() as http, connect_ws(ws_url(url), http) as ws:
        ws.send_text(subscribe_request("events", from_height=1))
        last_h = 0
        while last_h < upto and time.monotonic() < end:
            try:  # notifications come only for blocks with events: idle means caught up
                text = ws.receive_text(timeout=min(IDLE_S, max(0.1, end - time.monotonic())))
            except (TimeoutError, queue.Empty):
                break
            msg = json.loads(text)
            r = sub_message(msg)  # raises the node's error answer, SubscriptionClosed
            p = msg.get("params") or {}
            if "height" in p:
                last_h = max(last_h, int(p["height"]))
            if isinstance(r, dict) and "kind" in r:
                key = r.get("key", "")
                r = {**r, "key": key.encode() if isinstance(key, str) else b"?"}
                if r["height"] <= upto:
                    evs.append(SimpleNamespace(**r))
    return events_to_history(evs)


def check_lock_safety(url: str | None, upto: int, lock_ops: Counter) -> Check:
    from testnet.history import check_locks

    if url is None:
        return Check("lock safety", VIOLATED, "no honest node kept every app event")
    try:
        hist = lock_history(url, upto)
    except Exception as exc:
        return Check("lock safety", VIOLATED, f"could not read the events: {exc}")
    rep = check_locks(hist)
    if rep["result"] != "ok":
        v = rep["violations"][:3]
        return Check("lock safety", VIOLATED, f"{len(rep['violations'])} violations: {v}")
    if not rep["grants"]:
        return Check("lock safety", VIOLATED, "no lock was ever granted: the check saw nothing")
    return Check("lock safety", OK, f"{rep['grants']} grants over {len(hist)} lock/lease events "
                 f"({dict(lock_ops)})")


# ---------------------------------------------------------------- orchestration


def run_scenario(sc: Scenario, d: Path | None = None, *, base_port: int | None = None,
                 keep: bool = False, fake_acks: int = 0, log=None,
                 baseline: dict[str, Any] | None = None, netns: bool = False) -> dict[str, Any]:
    """Run `sc` on a fresh testnet in `d` (a temp dir by default) and return the report dict
    (`ok`, `checks`, `faults`, ...). `fake_acks` plants hashes that were never submitted among
    the acknowledged txs (to show the checker fails when it should). `baseline`: the report of
    the same scenario without its byzantine nodes (honest put latency is judged against it).
    `netns`: each node in its own network namespace; partitions are then kernel cuts."""
    say = log or (lambda s: None)
    own_dir = d is None
    d = Path(tempfile.mkdtemp(prefix=f"attack-{sc.name}-")) if d is None else Path(d).resolve()
    if base_port is None:
        base_port = free_port_base(2 * sc.nodes + 2)
    started = time.monotonic()
    say(f"starting {sc.nodes} nodes in {d} (byzantine: {sc.byzantine or 'none'})")
    report: dict[str, Any] = {"scenario": sc.name, "description": sc.description,
                              "nodes": sc.nodes, "byzantine": {str(k): v for k, v in
                                                               sc.byzantine.items()},
                              "dir": str(d), "netns": netns}
    try:
        m = launcher.up(d, sc.nodes, open_chain=True, base_port=base_port, byzantine=sc.byzantine,
                        consensus=sc.consensus, log_level="info", netns=netns)
        run = Run(sc, d, m, fake_acks=fake_acks)
    except (launcher.LauncherError, httpx.HTTPError) as exc:
        # a node died before the run could start: peers' traffic killed it (a byzantine
        # node's first messages arrive during start-up), a verdict and not a runner error
        if "exited during start-up" not in str(exc) and not isinstance(exc, httpx.HTTPError):
            raise
        return _start_failure(report, sc, d, own_dir and not keep, exc, started)
    threads = [threading.Thread(target=run.monitor, args=(i,), daemon=True)
               for i in range(sc.nodes)]
    threads += [threading.Thread(target=run.put_client, args=(c,), daemon=True)
                for c in range(sc.load.clients)]
    threads += [threading.Thread(target=run.lock_client, args=(c,), daemon=True)
                for c in range(sc.load.lock_clients)]
    if sc.client_attack is not None:
        from testnet.client_attack import HostileClient

        run.hostile = HostileClient(run, sc.client_attack)
        threads.append(threading.Thread(target=run.hostile.run, daemon=True))
    sampler = threading.Thread(target=run.sample_usage, daemon=True)
    checks: list[Check] = []
    try:
        sampler.start()
        for t in threads:
            t.start()
        say("load running; applying perturbations")
        run.schedule()
        load_threads = threads[sc.nodes:]
        end = time.monotonic() + sc.load.duration_s + 2 * sc.load.commit_timeout_s + 10
        for t in load_threads:
            t.join(max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in load_threads):
            run.stop.set()  # stragglers: stop them (their txs stay unacknowledged)
            for t in load_threads:
                t.join(sc.load.commit_timeout_s + 6)
        # a byzantine primary from the start is a fault at t=0
        if sc.byzantine and not sc.perturbations:
            run.faults.insert(0, Fault(0.0, "byzantine from start", min(sc.byzantine), 0,
                                       note=",".join(sc.byzantine[min(sc.byzantine)])))
        for p in list(run.paused):
            run.resume(p)
        for t in run.starting:  # restarts in flight: wait until they answer (or give up)
            t.join(launcher.READY_TIMEOUT_S + 5)
        for t in run.probes:
            t.join(2 * sc.load.commit_timeout_s + 10)
        last_t = max((f.t for f in run.faults), default=0.0)
        last_h = max((f.height for f in run.faults), default=0)
        if sc.expect.idle_block_s > 0:  # before wait_progress: its probe txs are client load
            from testnet.idle_check import idle_block_checks

            say("checking heartbeat blocks without client load")
            checks += idle_block_checks(run, sc.expect.idle_block_s, Check)
        say("checking progress after the last perturbation")
        progress_t = run.wait_progress(last_t, last_h, sc.expect.progress_timeout_s)
        run.stop.set()
        checks += final_checks(run, progress_t, last_t)
        from testnet.heavy_load import heavy_load_checks, relay_stats

        checks += heavy_load_checks(run, baseline, Check)
        run.relay = relay_stats(call, {i: run.urls[i] for i in run.live_honest()})
        run.view_changes = view_change_reasons({i: run.urls[i] for i in run.live_honest()})
        run.sampling.set()
        sampler.join(5)
        checks += usage_checks(run)
    finally:
        run.stop.set()
        run.sampling.set()
        for p in list(run.paused):
            run.resume(p)
        report["elapsed_s"] = round(time.monotonic() - started, 1)
        if not keep:
            with contextlib.suppress(Exception):
                launcher.down(d)
            if own_dir:
                shutil.rmtree(d, ignore_errors=True)
                report["dir"] = None
    report.update({
        "ok": all(c.result != VIOLATED for c in checks),
        "checks": [vars(c) for c in checks],
        "faults": [vars(f) for f in run.faults],
        "submitted": run.submitted,
        "acked": len(run.acked),
        "rejected": dict(run.rejected),
        "submit_errors": dict(run.submit_errors),
        "lock_ops": dict(run.lock_ops),
        "final_heights": run.report_heights,
        "view_changes": run.view_changes,
        "views": {str(i): v for i, v in run.views.items()},
        "evidence": run.evidence,
        "resources": {str(i): u.report() for i, u in run.usage.items()},
    })
    from testnet.heavy_load import latency_summary, max_view

    report.update({"put_latency_ms": latency_summary(run.put_lat_ms), "max_view": max_view(run),
                   "ledger_txs": run.ledger_txs, "relay_drops": run.relay})
    if baseline is not None:
        report["baseline"] = {k: baseline.get(k) for k in (
            "ok", "put_latency_ms", "max_view", "acked", "submitted", "ledger_txs",
            "elapsed_s")}
    if run.poison:
        report["poison"] = run.poison
    if run.hostile is not None:
        report["client_attack"] = run.hostile.report()
    return report


def view_change_reasons(urls: dict[int, str]) -> dict[str, Any]:
    """Per live node: the view changes its replica started, by reason (`health`)."""
    out: dict[str, Any] = {}
    with httpx.Client() as http:
        for i, url in urls.items():
            try:
                rep = call(http, url, "health", timeout=2.0)
                out[str(i)] = rep["replica"]["view_change"]["started"]
            except Exception as exc:
                out[str(i)] = f"unknown: {exc!r}"[:80]
    return out


def _start_failure(report: dict[str, Any], sc: Scenario, d: Path, remove: bool,
                   exc: Exception, started: float) -> dict[str, Any]:
    """The verdict when a node exits before the run starts (the testnet is taken down)."""
    with contextlib.suppress(Exception):
        launcher.down(d)
    if remove:
        shutil.rmtree(d, ignore_errors=True)
        report["dir"] = None
    text = str(exc)
    who = text.split(" exited", 1)[0] if " exited" in text else "a node"
    honest = [i for i in range(sc.nodes) if i not in sc.byzantine]
    report.update({
        "ok": False, "elapsed_s": round(time.monotonic() - started, 1),
        "checks": [vars(Check("honest nodes running", VIOLATED,
                              f"{who} stopped during start-up (honest nodes: {honest}): "
                              f"{text[:1500]}"))],
        "faults": [], "submitted": 0, "acked": 0, "rejected": {}, "submit_errors": {},
        "lock_ops": {}, "final_heights": {}, "views": {}, "evidence": {}, "resources": {},
    })
    return report


def usage_checks(run: Run) -> list[Check]:
    """Honest nodes' resident-memory growth and log volume against the manifest's bounds."""
    exp = run.sc.expect
    honest = {i: run.usage[i] for i in run.honest}
    checks = []
    for name, unit, limit, value in (
        ("honest memory growth", "MB", exp.max_rss_growth_mb, lambda u: u.rss_growth_mb),
        ("honest log volume", "bytes", exp.max_log_bytes, lambda u: u.log_bytes),
    ):
        if not honest:
            continue
        worst = max(honest, key=lambda i: value(honest[i]))
        over = {i: value(u) for i, u in honest.items() if limit and value(u) > limit}
        detail = (f"most {value(honest[worst])} {unit} (node{worst}); per honest node "
                  f"{ {i: value(u) for i, u in honest.items()} }"
                  + (f"; bound {limit} {unit}" if limit else "; no bound"))
        checks.append(Check(name, VIOLATED if over else OK if limit else INFO, detail))
    cpu = {i: u.cpu_s for i, u in run.usage.items()}
    checks.append(Check("cpu seconds", INFO, f"per node {cpu}"))
    return checks


PROOF_KINDS = ("equivocation",)  # evidence that proves misbehaviour (not a mere suspicion)


def evidence_checks(run: Run, http: httpx.Client, urls: dict[int, str],
                    chain: dict[int, dict] | None = None) -> list[Check]:
    """Evidence kept by the honest nodes (`evidence` RPC): who is blamed for what, and who is
    convicted by evidence on the ledger. Proof of equivocation against an honest node, or its
    conviction, is a violation; the manifest may require evidence and convictions."""
    checks: list[Check] = []
    blamed: Counter[str] = Counter()
    per_node: dict[int, int] = {}
    convicted: dict[int, dict[int, int]] = {}  # node -> {replica: height}
    for i, url in urls.items():
        try:
            res = call(http, url, "evidence", timeout=5)
        except Exception as exc:
            checks.append(Check("evidence rpc", VIOLATED, f"node{i}: {exc}"))
            continue
        items = res.get("evidence", [])
        per_node[i] = int(res.get("count", len(items)))
        for e in items:
            blamed[f"{e.get('kind')}@node{e.get('replica')}"] += 1
        convicted[i] = {int(c["replica"]): int(c["height"]) for c in res.get("convicted", [])}
    run.evidence = {"per_node": per_node, "blamed": dict(blamed),
                    "convicted": {str(i): c for i, c in convicted.items()}}
    timing = conviction_timing(run, convicted, chain or {})
    if timing:
        run.evidence["conviction_timing"] = timing
    return checks + judge_evidence(blamed, per_node, run.honest, list(run.sc.byzantine),
                                   run.sc.expect.evidence) + judge_convictions(
        convicted, run.honest, run.sc.expect.convicted, timing)


def conviction_timing(run: Run, convicted: dict[int, dict[int, int]],
                      chain: dict[int, dict]) -> dict[str, dict]:
    """Per convicted replica: the conviction height, its block time and when an honest node
    was first seen holding it, both in seconds since the run started."""
    out: dict[str, dict] = {}
    for r in sorted({r for c in convicted.values() for r in c}):
        h = min(c[r] for c in convicted.values() if r in c)
        item: dict[str, Any] = {"height": h}
        block = chain.get(h)
        if block is not None and block.get("time"):
            item["block_time_s"] = round((int(block["time"]) - run.t0_wall_ms) / 1000.0, 3)
        with run.lock:
            seen = [t for i in run.honest for t, hh in run.heights[i] if hh >= h]
        if seen:
            item["seen_s"] = round(min(seen), 3)
        out[str(r)] = item
    return out


def judge_convictions(convicted: dict[int, dict[int, int]], honest: list[int],
                      want: tuple[int, ...], timing: dict[str, dict] | None = None
                      ) -> list[Check]:
    """`convicted`: per honest node, the replicas it reports convicted and at which height."""
    checks = []
    wrong = sorted({r for c in convicted.values() for r in c if r in honest})
    if wrong:
        checks.append(Check("no honest node convicted", VIOLATED,
                            f"honest node(s) {wrong} convicted: {convicted}"))
    heights: dict[int, set[int]] = {}
    for c in convicted.values():
        for r, h in c.items():
            heights.setdefault(r, set()).add(h)
    split = {r: sorted(hs) for r, hs in heights.items() if len(hs) > 1}
    if split:
        checks.append(Check("convictions agree", VIOLATED,
                            f"one replica convicted at different heights: {split}"))
    if want:
        missing = {i: sorted(set(want) - set(c)) for i, c in convicted.items()
                   if not set(want) <= set(c)}
        detail = (f"node(s) {list(want)} convicted on all {len(convicted)} live honest nodes "
                  f"at height(s) {dict((r, sorted(hs)) for r, hs in heights.items())}"
                  + (f"; timing {timing}" if timing else ""))
        checks.append(Check("expected convictions", VIOLATED if missing or not convicted
                            else OK, f"not convicted on: {missing}" if missing else detail))
    elif heights:
        checks.append(Check("convictions", INFO, f"{dict((r, sorted(hs)) for r, hs in heights.items())}"
                            + (f"; timing {timing}" if timing else "")))
    return checks


def judge_evidence(blamed: Counter, per_node: dict[int, int], honest: list[int],
                   byzantine: list[int], want: bool) -> list[Check]:
    """`blamed` counts "kind@node<i>" over the honest nodes' evidence."""
    checks = []
    wrong = {k: v for k, v in blamed.items() if k.split("@")[0] in PROOF_KINDS
             and int(k.rsplit("node", 1)[1]) in honest}
    if wrong:
        checks.append(Check("no honest node proven faulty", VIOLATED,
                            f"proof-kind evidence against honest nodes: {wrong}"))
    detail = f"per honest node {per_node}; blamed {dict(blamed.most_common(6))}"
    ok = any(k.endswith(f"@node{b}") for k in blamed for b in byzantine)
    checks.append(Check("evidence reported", (OK if ok else VIOLATED) if want else INFO,
                        detail if ok or not want else
                        f"no honest node blames a byzantine node: {detail}"))
    return checks


def time_faults(run: Run, chain: dict[int, dict]) -> None:
    """For each fault: the first block PROPOSED after it (block time > fault time; the block
    time is the proposing primary's clock on this same host) and when an honest node was first
    seen holding it. A block already in flight at the fault does not count."""
    for fl in run.faults:
        wall = run.t0_wall_ms + fl.t * 1000.0
        later = [h for h, b in sorted(chain.items()) if int(b.get("time", 0)) > wall]
        if not later:
            continue
        h = later[0]
        with run.lock:
            seen = [t for i in run.honest for t, hh in run.heights[i] if hh >= h]
        if seen:
            fl.next_commit_s = round(max(0.0, min(seen) - fl.t), 3)
        fl.next_height = h
        fl.next_view = chain[h].get("view")
        if fl.next_view is not None and int(fl.next_view) > fl.view:
            # when an honest node was first seen in that view; 0 if before the fault (a view
            # change already under way, status polled every 50 ms): timed from the fault then
            with run.lock:
                entered = [t for t, i, v in run.view_log
                           if i in run.honest and v >= int(fl.next_view)]
            if entered:
                fl.view_change_s = round(max(0.0, min(entered) - fl.t), 3)
                if fl.next_commit_s is not None:
                    fl.commit_after_view_change_s = round(
                        max(0.0, fl.next_commit_s - fl.view_change_s), 3)


def final_checks(run: Run, progress_t: float | None, last_t: float) -> list[Check]:
    sc = run.sc
    checks: list[Check] = []
    report_heights = run.report_heights
    m = launcher.read_manifest(run.d)
    # honest nodes alive: a node we did not kill must still run (no crash from peers' input)
    crashed = [i for i in run.honest if i not in run.down and
               not launcher.pid_alive(m["nodes"][i]["pid"], m["nodes"][i]["home"])]
    checks.append(Check("honest nodes running", VIOLATED if crashed else OK,
                        f"crashed: {crashed}" + "".join(
                            f"\nnode{i} log: {launcher.tail(m['nodes'][i]['log'], 5)}"
                            for i in crashed[:1]) if crashed else
                        f"{len(run.honest) - len(run.down)} of {len(run.honest)} honest nodes up"
                        + (f" ({sorted(run.down)} stopped on purpose)" if run.down else "")))
    if run.start_failures:
        checks.append(Check("restarted nodes came up", VIOLATED, "; ".join(run.start_failures)))
    live = [i for i in run.live_honest() if i not in crashed]
    urls = {i: run.urls[i] for i in live}
    if progress_t is None:
        checks.append(Check("progress after faults", VIOLATED if sc.expect.progress else INFO,
                            f"no block committed within {sc.expect.progress_timeout_s:.0f}s "
                            f"after t={last_t:.1f}s"))
    else:
        checks.append(Check("progress after faults", OK,
                            f"first commit {progress_t - last_t:.2f}s after t={last_t:.1f}s"))
    with httpx.Client() as http:
        # catch-up: every live honest node reaches the height the highest one had at the start
        def height(i: int) -> int:
            try:
                return int(call(http, urls[i], "status", timeout=2)["height"])
            except Exception:
                return -1

        target = max((height(i) for i in live), default=0)
        end = time.monotonic() + sc.expect.settle_s
        hs = {i: height(i) for i in live}
        while min(hs.values(), default=target) < target and time.monotonic() < end:
            time.sleep(0.2)
            hs = {i: height(i) for i in live}
        lag = {i: h for i, h in hs.items() if h < target}
        checks.append(Check("honest nodes caught up", VIOLATED if lag else OK,
                            f"behind height {target} after {sc.expect.settle_s:.0f}s: {lag}"
                            if lag else f"all {len(live)} live honest nodes reached {target}"))
        common = min((h for h in hs.values() if h >= 0), default=0)
        try:
            chains = {i: headers(http, urls[i], max(hs[i], common)) for i in live}
        except Exception as exc:
            checks.append(Check("agreement", VIOLATED, f"could not read blocks: {exc}"))
            return checks
        checks.append(check_agreement(chains, common))
        time_faults(run, chains[max(chains, key=lambda i: len(chains[i]))] if chains else {})
        report_heights.update({str(i): h for i, h in hs.items()})
        acked = list(run.acked)
        for k in range(run.fake_acks):  # planted: never submitted, so never committed
            acked.append(bytes([0xFA, k % 256]) * 16)
        checks.append(check_acked(http, urls, chains, acked))
        n_acked = len(run.acked)
        checks.append(Check("load acknowledged", OK if n_acked >= sc.expect.min_acked else
                            VIOLATED, f"{n_acked} of {run.submitted} submitted txs acknowledged"
                            f" (need >= {sc.expect.min_acked})"))
        if sc.load.lock_clients:
            never_restarted = [i for i in live if not any(
                f.node == i and f.action in ("kill", "kill-hard", "restart", "wipe-restart")
                for f in run.faults)]
            checks.append(check_lock_safety(urls[never_restarted[0]] if never_restarted
                                            else None, common, run.lock_ops))
        longest = chains[max(chains, key=lambda i: len(chains[i]))] if chains else {}
        run.ledger_txs = sum(len(b.get("tx_hashes", [])) for b in longest.values())
        checks += evidence_checks(run, http, urls, longest)
        from testnet.client_attack import poison_checks

        checks += poison_checks(run, http, urls)
        if run.hostile is not None:
            checks += run.hostile.checks(http, urls)
        for f in run.faults:
            if "not supported" in f.note:
                checks.append(Check(f"{f.action} node{f.node}", SKIPPED, f.note))
    return checks


# ---------------------------------------------------------------- output and CLI


def print_report(rep: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    title = f"attack {rep['scenario']}: {'[green]PASS' if rep['ok'] else '[red]FAIL'}[/]"
    t = Table(title=title, caption=rep.get("description") or None)
    t.add_column("check")
    t.add_column("verdict")
    t.add_column("detail", overflow="fold")
    style = {OK: "green", VIOLATED: "red", INFO: "cyan", SKIPPED: "yellow"}
    for c in rep["checks"]:
        t.add_row(c["name"], f"[{style[c['result']]}]{c['result']}[/]", c["detail"])
    con.print(t)
    if rep["faults"]:
        ft = Table(title="faults: time to the next commit")
        for col in ("t (s)", "fault", "node", "height", "next commit (s)", "at height/view",
                    "new view seen (s)", "commit after it (s)", "put at kill (s)", "note"):
            ft.add_column(col)
        for f in rep["faults"]:
            nxt = f["next_commit_s"]
            vc, after = f.get("view_change_s"), f.get("commit_after_view_change_s")
            ft.add_row(f"{f['t']:.2f}", f["action"], str(f["node"]), str(f["height"]),
                       "-" if nxt is None else f"{nxt:.2f}",
                       f"{f['next_height']}/{f['next_view']}" if f["next_height"] else "-",
                       "-" if vc is None else f"{vc:.2f}",
                       "-" if after is None else f"{after:.2f}",
                       "-" if f.get("probe_commit_s") is None else
                       f"{f['probe_commit_s']:.2f} (node{f['probe_node']})", f["note"])
        con.print(ft)
    con.print(f"submitted {rep['submitted']}, acknowledged {rep['acked']}, rejected "
              f"{sum(rep['rejected'].values())}, elapsed {rep['elapsed_s']}s, final heights "
              f"{rep['final_heights']}")
    lat, base = rep.get("put_latency_ms") or {}, (rep.get("baseline") or {})
    if lat.get("n"):
        con.print(f"honest puts: p50 {lat['p50']} ms, p99 {lat['p99']} ms over {lat['n']}; "
                  f"highest view {rep.get('max_view')}; txs on the ledger {rep.get('ledger_txs')}"
                  + (f"; baseline p50 {base['put_latency_ms']['p50']} ms, p99 "
                     f"{base['put_latency_ms']['p99']} ms, highest view {base['max_view']}"
                     if base.get("put_latency_ms") else ""))
    if any(v.get("forwarded-request-over-share") or v.get("forwarded-request-not-admitted")
           for v in (rep.get("relay_drops") or {}).values()):
        con.print(f"relayed requests dropped (over the relay's share, not admitted, already "
                  f"held), per honest node: {rep['relay_drops']}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?",
                   help="a scenario TOML file or a shipped name (see --list)")
    p.add_argument("--dir", help="testnet directory (default: a fresh temporary one)")
    p.add_argument("--base-port", type=int, help="node i uses base+2i, base+2i+1")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--keep", action="store_true", help="leave the testnet running afterwards")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios")
    p.add_argument("--duration", type=float, default=0.0, metavar="S",
                   help="submit load for S seconds instead of the scenario's duration (txs and "
                        "min_acked scale with it): a soak run of the same attack")
    p.add_argument("--byzantine", action="append", default=[], metavar="I:STRATEGY",
                   help="replace the scenario's Byzantine nodes (repeatable; e.g. 1:bloat:8192:20 "
                        "for a faster attacker)")
    p.add_argument("--baseline", action="store_true",
                   help="first run the same scenario with every node honest, and judge honest "
                        "put latency against it ([expect] max_p50_ratio, max_p99_ratio)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the scenario N times (fresh testnets) and report each run's "
                        "verdict and fault timings, and how many passed")
    p.add_argument("--reads", type=int, default=1000, metavar="N",
                   help="lying-reads: how many reads the verifying client makes")
    p.add_argument("--netns", action="store_true",
                   help="each node in its own network namespace (root): partitions are cut in "
                        "the kernel, not in the transports")
    p.add_argument("--plant-fake-ack", type=int, default=0, metavar="K",
                   help="self-test: add K never-submitted tx hashes to the acknowledged set "
                        "(the run must then fail)")


def with_overrides(sc: Scenario, duration_s: float = 0.0,
                   byzantine: list[str] | None = None) -> Scenario:
    """The scenario with its load stretched to `duration_s` (txs and min_acked in proportion)
    and/or its Byzantine nodes replaced by `I:STRATEGY` specs."""
    if duration_s > 0:
        k = duration_s / sc.load.duration_s
        sc = replace(
            sc, load=replace(sc.load, duration_s=duration_s, txs=round(sc.load.txs * k)),
            expect=replace(sc.expect, min_acked=round(sc.expect.min_acked * k)))
    if byzantine:
        from testnet.adversary import parse_byzantine

        sc = replace(sc, byzantine=parse_byzantine(byzantine, sc.nodes))
    return sc


def run(args: argparse.Namespace) -> int:
    if args.scenario == LYING_READS:
        return run_lying_reads(args)
    if args.list or not args.scenario:
        for name in shipped_scenarios():
            sc = load_scenario(name)
            print(f"{name:28} {sc.description}")
        return 0 if args.list else 2
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"testnet attack: {exc}", file=sys.stderr)
        return 2
    try:
        sc = with_overrides(sc, args.duration, args.byzantine)
    except ValueError as exc:
        print(f"testnet attack: {exc}", file=sys.stderr)
        return 2
    d = Path(args.dir) if args.dir else None
    if d is not None and d.exists() and any(d.iterdir()):
        # a scenario always starts from a fresh chain; never delete a user's directory
        print(f"testnet attack: --dir {d} is not empty; give a new or empty directory",
              file=sys.stderr)
        return 2
    if args.repeat > 1 and (d is not None or args.keep):
        print("testnet attack: --repeat runs fresh temporary testnets (no --dir, no --keep)",
              file=sys.stderr)
        return 2
    log = None if args.json else (lambda s: print(f"[attack] {s}", file=sys.stderr))

    def once() -> dict[str, Any]:
        base = None
        if args.baseline:
            from testnet.heavy_load import without_byzantine

            base = run_scenario(without_byzantine(sc), None, base_port=args.base_port, log=log,
                                netns=args.netns)
        return run_scenario(sc, d, base_port=args.base_port, keep=args.keep,
                            fake_acks=args.plant_fake_ack, log=log, baseline=base,
                            netns=args.netns)

    try:
        if args.repeat > 1:
            return run_repeated(sc.name, once, args.repeat, args.json, log)
        rep = once()
    except (launcher.LauncherError, NetnsError, ScenarioError, OSError) as exc:
        print(f"testnet attack: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep, default=str))
    else:
        print_report(rep)
    return 0 if rep["ok"] else 1


LYING_READS = "lying-reads"  # not a TOML scenario: testnet/lying_check.py


def run_lying_reads(args: argparse.Namespace) -> int:
    """`attack lying-reads`: a client verifying every answer of a lying node."""
    from testnet import lying_check

    log = None if args.json else (lambda s: print(f"[attack] {s}", file=sys.stderr))
    try:
        rep = lying_check.run_lying_reads(args.reads, Path(args.dir) if args.dir else None,
                                          args.base_port, log)
    except (launcher.LauncherError, OSError) as exc:
        print(f"testnet attack: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep, default=str))
    else:
        lying_check.print_report(rep)
    return 0 if rep["ok"] else 1


def run_summary(rep: dict[str, Any]) -> dict[str, Any]:
    """One run of a repeated scenario, in brief: the verdict, what failed, the fault timings."""
    keys = ("t", "action", "node", "next_commit_s", "next_view", "view_change_s",
            "commit_after_view_change_s", "probe_commit_s", "probe_node", "note")
    return {"ok": rep["ok"], "elapsed_s": rep["elapsed_s"], "acked": rep["acked"],
            "submitted": rep["submitted"],
            "violated": [f"{c['name']}: {c['detail']}"[:300] for c in rep["checks"]
                         if c["result"] == VIOLATED],
            "faults": [{k: f.get(k) for k in keys} for f in rep["faults"]],
            "put_latency_ms": rep.get("put_latency_ms"), "max_view": rep.get("max_view"),
            "view_changes": rep.get("view_changes"),
            "baseline_put_latency_ms": (rep.get("baseline") or {}).get("put_latency_ms")}


def run_repeated(name: str, once: Any, n: int, as_json: bool, log: Any) -> int:
    """`--repeat N`: N fresh runs; each run's summary as it ends, then how many passed."""
    runs = []
    for k in range(n):
        rep = once()
        runs.append(run_summary(rep))
        r = runs[-1]
        line = (f"run {k + 1}/{n}: {'PASS' if r['ok'] else 'FAIL'} ({r['elapsed_s']}s, acked "
                f"{r['acked']}/{r['submitted']}) " + "; ".join(
                    f"{f['action']} node{f['node']}: next commit {f['next_commit_s']}s "
                    f"(view {f['next_view']}, new view seen {f['view_change_s']}s, commit "
                    f"{f['commit_after_view_change_s']}s after it"
                    + (f"; put to node{f['probe_node']} at the kill committed in "
                       f"{f['probe_commit_s']}s" if f.get("probe_node") is not None else "")
                    + ")" for f in r["faults"])
                + "".join(f"\n    violated {v}" for v in r["violated"]))
        print(line, file=sys.stderr, flush=True)
    passed = sum(r["ok"] for r in runs)
    if as_json:
        print(json.dumps({"scenario": name, "runs": runs, "passed": passed, "of": n},
                         default=str))
    else:
        print(f"{name}: {passed} of {n} runs passed")
    return 0 if passed == n else 1
