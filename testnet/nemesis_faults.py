"""The nemesis run's faults: a seeded schedule (pure) and the injector that applies it to a
running `--netns` testnet.

Kinds (one fault at a time, each followed by a quiet gap in which everything is healed):
    partition-minority  one node cut off from all others (both ways, kernel routes)
    partition-majority  the nodes split into two halves; no side has a quorum
    partition-bridge    two halves that only talk through one bridge node (Jepsen's bridge)
    partition-one-way   one node's packets to every other node dropped; it still receives
    kill                SIGKILL, restarted when the fault ends
    pause               SIGSTOP, SIGCONT when the fault ends
    clock-skew          one node's clock offset by +-(250..3/4 of max_clock_skew_ms) ms, live
    netem               `lossy` link profile (delay, loss, reordering) on one node's egress;
                        in the kernel where it has sch_netem (`netem_available`), else in
                        the node's transport (delay, frame loss)
    byzantine           one node (<= f at once: faults never overlap) restarted with a
                        Byzantine strategy, restarted honest when the fault ends
Imports: stdlib, testnet.{launcher,links,netns}, testnet.adversary.{node,clock}.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("partition-minority", "partition-majority", "partition-bridge", "partition-one-way",
         "kill", "pause", "clock-skew", "netem", "byzantine")
BYZANTINE = ("equivocate", "forge", "replay", "fake-view-change", "bad-checkpoint", "silent")
NETEM_PROFILE = "lossy"
WARMUP_S = 4.0
TAIL_S = 4.0  # no fault starts in the last seconds: the run ends healed
MIN_FAULT_S, MAX_FAULT_S = 2.0, 7.0
MIN_GAP_S, MAX_GAP_S = 1.5, 4.0


@dataclass(frozen=True)
class Fault:
    kind: str
    start_s: float
    duration_s: float
    nodes: tuple[int, ...] = ()  # the nodes it acts on
    cuts: tuple[tuple[int, int], ...] = ()  # directed (src, dst) cuts of a partition
    arg: str = ""  # strategy name, clock offset (ms) or link profile

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cuts": [list(c) for c in self.cuts]}


def _halves(rng: random.Random, n: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    return sorted(order[: n // 2]), sorted(order[n // 2:])


def _cuts_between(a: Sequence[int], b: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted({(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}))


def make_fault(kind: str, rng: random.Random, n: int, start: float, dur: float,
               max_skew_ms: int) -> Fault:
    """One fault of `kind` with random targets (all draws from `rng`)."""
    if kind == "partition-minority":
        i = rng.randrange(n)
        return Fault(kind, start, dur, (i,), _cuts_between([i], [j for j in range(n) if j != i]))
    if kind == "partition-majority":
        a, b = _halves(rng, n)
        return Fault(kind, start, dur, tuple(range(n)), _cuts_between(a, b))
    if kind == "partition-bridge":
        a, b = _halves(rng, n)
        bridge = rng.choice(b)
        return Fault(kind, start, dur, (bridge,),
                     _cuts_between(a, [x for x in b if x != bridge]), f"bridge {bridge}")
    if kind == "partition-one-way":
        i = rng.randrange(n)
        return Fault(kind, start, dur, (i,), tuple((i, j) for j in range(n) if j != i))
    if kind == "clock-skew":
        low = min(250, max_skew_ms)
        ms = rng.randint(low, max_skew_ms) * rng.choice((-1, 1))
        return Fault(kind, start, dur, (rng.randrange(n),), arg=str(ms))
    if kind == "byzantine":
        return Fault(kind, start, dur, (rng.randrange(n),), arg=rng.choice(BYZANTINE))
    if kind == "netem":
        return Fault(kind, start, dur, (rng.randrange(n),), arg=NETEM_PROFILE)
    if kind in ("kill", "pause"):
        return Fault(kind, start, dur, (rng.randrange(n),))
    raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")


def schedule(seed: int, duration_s: float, n: int, kinds: Sequence[str] = KINDS,
             max_skew_ms: int = 1500) -> list[Fault]:
    """A deterministic schedule for `seed`: faults one after another, each 2-7 s, 1.5-4 s
    apart, from WARMUP_S until TAIL_S before the end; kinds drawn round-robin from a seeded
    shuffle (so a short run still sees most kinds)."""
    if not kinds:
        return []
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown fault kind {k!r}; kinds: {', '.join(KINDS)}")
    rng = random.Random(seed)
    deck: list[str] = []
    out: list[Fault] = []
    t = WARMUP_S
    while t + MIN_FAULT_S <= duration_s - TAIL_S:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        dur = min(rng.uniform(MIN_FAULT_S, MAX_FAULT_S), duration_s - TAIL_S - t)
        out.append(make_fault(deck.pop(), rng, n, round(t, 3), round(dur, 3), max_skew_ms))
        t += dur + rng.uniform(MIN_GAP_S, MAX_GAP_S)
    return out


# ---------------------------------------------------------------- the injector


def netem_available(d: str | os.PathLike) -> str | None:
    """None if node 0's namespace takes a netem qdisc, else why not (e.g. no sch_netem)."""
    from testnet import links
    from testnet import netns as ns
    from testnet.launcher import LauncherError

    try:
        links.link(d, "lan", [0])
        links.link(d, "clear", [0])
    except (ns.NetnsError, LauncherError) as exc:
        return str(exc)
    return None


@dataclass
class Applied:
    """What happened to one scheduled fault (times on the run's clock, seconds)."""

    fault: Fault
    started: float | None = None
    ended: float | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**self.fault.to_json(), "started": self.started, "ended": self.ended,
                "error": self.error}


@dataclass
class Injector:
    """Applies a schedule to the testnet in `d` from a thread (`start`), on `clock` (seconds
    since the run began). `finish` stops it and heals everything."""

    d: str
    faults: list[Fault]
    clock: Callable[[], float]
    emulate_links: bool = False  # netem faults in the nodes' transports (no sch_netem here)
    log: list[Applied] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def _wait_until(self, t: float) -> bool:
        return not self._stop.wait(max(0.0, t - self.clock()))

    def _run(self) -> None:
        for f in self.faults:
            if not self._wait_until(f.start_s):
                return
            rec = Applied(f)
            self.log.append(rec)
            rec.started = self.clock()
            try:
                self.apply(f)
            except Exception as exc:  # a fault that failed to apply is reported, not fatal
                rec.error = f"apply: {type(exc).__name__}: {exc}"
            self._wait_until(f.start_s + f.duration_s)
            try:
                self.revert(f)
            except Exception as exc:
                rec.error += f" revert: {type(exc).__name__}: {exc}"
            rec.ended = self.clock()

    def _node(self, i: int) -> dict[str, Any]:
        from testnet.launcher import read_manifest

        return read_manifest(self.d)["nodes"][i]

    def apply(self, f: Fault) -> None:
        from testnet import launcher, links
        from testnet.adversary.clock import write_offset
        from testnet.adversary.node import Adversary, write_adversary

        if f.cuts:
            links.cut(self.d, list(f.cuts))
        elif f.kind == "kill":
            launcher.kill(self.d, f.nodes[0], hard=True)
        elif f.kind == "pause":
            os.kill(self._node(f.nodes[0])["pid"], signal.SIGSTOP)
        elif f.kind == "clock-skew":
            write_offset(self._node(f.nodes[0])["home"], int(f.arg))
        elif f.kind == "netem":
            links.link(self.d, f.arg, [f.nodes[0]], emulate=self.emulate_links)
        elif f.kind == "byzantine":
            node = self._node(f.nodes[0])
            write_adversary(node["home"], Adversary((f.arg,), launcher.LINK_FAULTS_FILE))
            launcher.restart(self.d, f.nodes[0])

    def revert(self, f: Fault) -> None:
        from testnet import launcher, links
        from testnet.adversary.clock import write_offset
        from testnet.adversary.node import Adversary, write_adversary

        if f.cuts:
            links.heal(self.d)
        elif f.kind == "kill":
            launcher.restart(self.d, f.nodes[0])
        elif f.kind == "pause":
            os.kill(self._node(f.nodes[0])["pid"], signal.SIGCONT)
        elif f.kind == "clock-skew":
            write_offset(self._node(f.nodes[0])["home"], 0)
        elif f.kind == "netem":
            links.link(self.d, "clear", [f.nodes[0]], emulate=self.emulate_links)
        elif f.kind == "byzantine":
            node = self._node(f.nodes[0])
            write_adversary(node["home"], Adversary((), launcher.LINK_FAULTS_FILE))
            launcher.restart(self.d, f.nodes[0])

    def finish(self, join_timeout: float = 120.0) -> list[str]:
        """Stop injecting, wait for the fault in progress to be reverted, then make sure every
        node is healed, honest, on time, running and not paused; returns what it had to fix."""
        from testnet import launcher, links
        from testnet.adversary.clock import write_offset
        from testnet.adversary.node import Adversary, read_adversary, write_adversary

        self._stop.set()
        if self._thread is not None:
            self._thread.join(join_timeout)
        fixed: list[str] = []
        m = launcher.read_manifest(self.d)
        if m.get("cuts"):
            fixed.append("heal")
        links.heal(self.d)
        for node in m["nodes"]:
            i, home = node["index"], node["home"]
            write_offset(home, 0)
            if node.get("pid"):
                try:
                    os.kill(node["pid"], signal.SIGCONT)
                except ProcessLookupError:
                    pass
            if read_adversary(home).byzantine:
                write_adversary(home, Adversary((), launcher.LINK_FAULTS_FILE))
                fixed.append(f"honest {i}")
                launcher.restart(self.d, i)
            elif not launcher.pid_alive(node.get("pid"), home):
                fixed.append(f"restart {i}")
                launcher.restart(self.d, i)
        if m.get("links"):
            links.link(self.d, "clear")
        return fixed


def count_by_kind(log: Sequence[Applied]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in log:
        if a.started is not None and not a.error.startswith("apply"):
            out[a.fault.kind] = out.get(a.fault.kind, 0) + 1
    return out


def wait_for(cond: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    """`cond()`'s first truthy value within `timeout` s, else None."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v or None
        time.sleep(step)
