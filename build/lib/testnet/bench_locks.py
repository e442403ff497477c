"""`python -m testnet bench-locks`: lock contention on a real testnet, recorded and checked.

Owns the lock workload shared by the benchmark and tests/integration/primitives: C clients
(each its own Ed25519 key, one lease kept alive in the background) contend for L locks; each
round acquires a lock (FIFO queue), does a FENCED write (a txn that succeeds only if the stored
fence token is lower than ours, then stores our token and a data value), holds briefly and
releases. Optional plain KV clients put and linearizably get. Optional "staller": once granted
a lock it stops renewing its lease, so the cluster must take the lock away after the lease's
agreed deadline and hand it to the next waiter. An `EventRecorder` subscribes to the app's
`events` topic of a node over WebSocket; the events plus the clients' KV ops (wall-clock
invoke/complete) form a `testnet.history` JSON-lines history, checked for mutual exclusion,
increasing tokens, FIFO, lease-expiry timing and KV linearizability.

Output (`--json`): one object with `acquire_per_s`, `release_per_s`, `cycles_per_s`,
`acquire_p50_ms`/`p99`, `release_p50_ms`/`p99`, counts, and `check` (the history verdict).

Imports: stdlib, trio, httpx_ws, bftnode.client, bftnode.app.ops, testnet.history,
testnet.launcher (only when it starts its own testnet).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio

from bftnode.app import ops
from bftnode.client import AsyncClient, ClientError, SubscriptionClosed, TxFailed
from bftnode.client.core import sub_message, subscribe_request, ws_url
from testnet import history as H

FENCE_WIDTH = 8  # tokens as fixed-width big-endian bytes: byte order = numeric order


def token_bytes(token: int) -> bytes:
    return token.to_bytes(FENCE_WIDTH, "big")


def fence_key(lock: str) -> bytes:
    return f"fence/{lock}".encode()


def data_key(lock: str) -> str:
    return f"data/{lock}"


@dataclass
class Workload:
    clients: int = 8
    locks: int = 3
    duration_s: float = 15.0
    kv_clients: int = 2  # of `clients`: plain put/get instead of locks
    ttl_s: float = 5.0  # lock clients' leases (kept alive every ttl/3)
    hold_ms: float = 20.0
    acquire_timeout_s: float = 20.0
    kv_keys: int = 3
    prefix: str = "bl"  # lock names and keys are namespaced by it (several runs per chain)
    seed: int = 1
    staller_at_s: float | None = None  # when the staller starts (None = no staller)
    staller_ttl_s: float = 2.0
    verify: str = "certificate"

    def lock_names(self) -> list[str]:
        return [f"{self.prefix}-L{i}" for i in range(self.locks)]

    def kv_names(self) -> list[str]:
        return [f"{self.prefix}/kv{i}" for i in range(self.kv_keys)]


@dataclass
class Result:
    kv_ops: list[dict] = field(default_factory=list)  # history lines (type kv)
    init: list[dict] = field(default_factory=list)
    acquire_ms: list[float] = field(default_factory=list)
    release_ms: list[float] = field(default_factory=list)
    fenced_write_ms: list[float] = field(default_factory=list)
    grants: list[dict] = field(default_factory=list)  # client view: lock, lease, token, client
    releases: list[dict] = field(default_factory=list)
    fence_rejected: int = 0  # fenced writes refused because a newer token had written
    # ...of which the writer's lock was then seen lost (lock_status: its token not the holder);
    # a refusal while the writer still holds its lock would break mutual exclusion
    fence_rejected_after_loss: int = 0
    release_conflicts: int = 0  # release refused: the lock had been lost meanwhile
    lease_losses: int = 0
    errors: list[str] = field(default_factory=list)
    max_height: int = 0
    staller: dict | None = None
    elapsed_s: float = 0.0
    start_height: int = 0


class EventRecorder:
    """All app events of one node from `from_height` on, via the `events` WebSocket topic.
    Reconnects and resubscribes where it stopped (a node restart, or the server closing a
    slow subscription). Completeness up to a point is proven by waiting for the event of a
    sentinel write made after everything else (`wait_for`)."""

    def __init__(self, url: str, from_height: int) -> None:
        self.url = url.rstrip("/")
        self.from_height = from_height
        self.events: list[dict] = []
        self.error: str | None = None
        self.reconnects = 0
        self._changed = trio.Event()

    def _resume_height(self) -> int:
        # resume at the last (possibly partly delivered) height; drop its events first
        if not self.events:
            return self.from_height
        h = self.events[-1]["height"]
        self.events = [e for e in self.events if e["height"] < h]
        return h

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        import httpx
        from httpx_ws import aconnect_ws

        started = False
        async with httpx.AsyncClient(timeout=30.0) as http:
            while True:
                try:
                    async with aconnect_ws(ws_url(self.url), http,
                                           max_message_size_bytes=8 * 1024 * 1024) as ws:
                        await ws.send_text(subscribe_request(
                            "events", from_height=self._resume_height()))
                        if not started:
                            started = True
                            task_status.started()
                        while not self._on_message(json.loads(await ws.receive_text())):
                            pass
                except Exception as exc:  # transport errors of httpx/httpx_ws: reconnect
                    self.error = f"{type(exc).__name__}: {exc}"
                self.reconnects += 1
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(0.2)

    def _on_message(self, msg: Any) -> bool:
        """Handle one message; True when the subscription ended (resubscribe)."""
        try:
            ev = sub_message(msg)
        except SubscriptionClosed as exc:
            self.error = str(exc.data.get("reason"))
            return True
        except ClientError as exc:  # an error answer
            self.error = f"{exc.code}: {exc.message}"
            return True
        if ev is not None and msg["params"].get("topic") == "events":
            self.events.append(ev)
            old, self._changed = self._changed, trio.Event()
            old.set()
        return False

    async def wait_for(self, pred: Callable[[dict], bool], timeout: float) -> dict | None:
        """The first recorded event satisfying `pred` (waiting up to `timeout` s)."""
        checked = 0
        with trio.move_on_after(timeout):
            while True:
                evs = self.events
                for e in evs[checked:]:
                    if pred(e):
                        return e
                checked = len(evs)
                await self._changed.wait()
                if len(self.events) < checked:  # resubscribed: rescan
                    checked = 0
        return None

    def snapshot(self, upto: int | None = None) -> list[dict]:
        return [e for e in self.events if upto is None or e["height"] <= upto]


def as_app_events(events: Sequence[dict]) -> list[Any]:
    """JSON events (utf8 keys) -> objects shaped like bftnode.app.AppEvent for history."""
    out = []
    for e in events:
        key = e.get("key")
        out.append(SimpleNamespace(**{**e, "key": key.encode() if isinstance(key, str)
                                      else (key or b"")}))
    return out


def build_history(res: Result, events: Sequence[dict], locks: Sequence[str]) -> list[dict]:
    """History lines: KV init + ops (wall clock) and lock/lease events (agreed order)."""
    lock_lines = [ln for ln in H.events_to_history(as_app_events(events))
                  if ln["type"] == "lease" or ln["lock"] in set(locks)]
    return [*res.init, *res.kv_ops, *lock_lines]


def check_history(lines: Sequence[dict]) -> dict:
    return H.check_lines([json.dumps(x) for x in lines])


# ---------------------------------------------------------------- the workload


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0


async def prepare(urls: Sequence[str], key_dir: Path, w: Workload, res: Result) -> None:
    """Initial values: fences at token 0, data and kv keys at "init"."""
    async with AsyncClient(list(urls), key_dir / "setup.key", verify=w.verify) as c:
        for name in w.lock_names():
            await c.put(fence_key(name), token_bytes(0))
            await c.put(data_key(name), "init")
            res.init.append({"type": "init", "key": data_key(name), "value": "init"})
        for k in w.kv_names():
            r = await c.put(k, "init")
            res.init.append({"type": "init", "key": k, "value": "init"})
            res.max_height = max(res.max_height, int(r.get("height") or 0))


async def _lease_keeper(c: AsyncClient, lease: int, every: float, dead: trio.Event) -> None:
    while not dead.is_set():
        await trio.sleep(every)
        try:
            await c.lease_keepalive(lease)
        except TxFailed:  # not_found: it expired (e.g. during a long view change)
            dead.set()
            return
        except ClientError:
            continue


async def lock_client(i: int, c: AsyncClient, w: Workload, res: Result, clock: _Clock,
                      end: float, rng: random.Random) -> None:
    names = w.lock_names()
    while time.monotonic() < end:
        try:
            lease = await c.lease_grant(w.ttl_s)
        except ClientError as exc:
            res.errors.append(f"c{i} lease_grant: {exc}")
            await trio.sleep(0.1)
            continue
        dead = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_lease_keeper, c, lease, w.ttl_s / 3, dead)
            await _lock_rounds(i, c, w, res, clock, end, rng, names, lease, dead)
            nursery.cancel_scope.cancel()
        if not dead.is_set():
            with trio.CancelScope(shield=True), _suppress():
                await c.lease_revoke(lease)
        else:
            res.lease_losses += 1


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        return et is not None and issubclass(et, ClientError)


async def _lock_rounds(i: int, c: AsyncClient, w: Workload, res: Result, clock: _Clock,
                       end: float, rng: random.Random, names: list[str], lease: int,
                       dead: trio.Event) -> None:
    while time.monotonic() < end and not dead.is_set():
        name = rng.choice(names)
        t0 = time.monotonic()
        try:
            token = await c.lock_acquire(name, lease, timeout=w.acquire_timeout_s)
        except TxFailed as exc:  # the lease is gone (expired while queued)
            res.errors.append(f"c{i} acquire {name}: {exc}")
            dead.set()
            return
        except ClientError as exc:
            res.errors.append(f"c{i} acquire {name}: {exc}")
            continue
        res.acquire_ms.append((time.monotonic() - t0) * 1000)
        res.grants.append({"client": i, "lock": name, "lease": lease, "token": token})
        refused = res.fence_rejected
        height = await fenced_write(i, c, name, token, res, clock)
        if res.fence_rejected > refused and await _lost(c, name, token, height):
            res.fence_rejected_after_loss += 1
        await trio.sleep(rng.uniform(0.5, 1.5) * w.hold_ms / 1000)
        t1 = time.monotonic()
        try:
            r = await c.lock_release(name, token)
            res.release_ms.append((time.monotonic() - t1) * 1000)
            res.releases.append({"client": i, "lock": name, "token": token,
                                 "height": r.get("height")})
            res.max_height = max(res.max_height, int(r.get("height") or 0))
        except TxFailed as exc:  # conflict: the lock was lost (lease expired) meanwhile
            res.release_conflicts += 1
            res.errors.append(f"c{i} release {name} token {token}: {exc}")
        except ClientError as exc:
            res.errors.append(f"c{i} release {name} token {token}: {exc}")


async def _lost(c: AsyncClient, name: str, token: int, height: int | None,
                tries: int = 20) -> bool:
    """True once lock_status, read at `height` (the refused write's) or later, shows `token`
    no longer holds `name` (False if it still does, or if no answer came in `tries`
    attempts). The height matters: a node still catching up (the restarted one) would
    answer from before the loss."""
    for _ in range(tries):
        try:
            st = await c.lock_status(name, token=token, min_height=height)
            return not st.get("held", False)
        except ClientError:  # e.g. rate limited: ask again
            await trio.sleep(0.25)
    return False


async def fenced_write(i: int, c: AsyncClient, name: str, token: int, res: Result,
                       clock: _Clock) -> int | None:
    """txn: if fence < token then fence = token, data = value. The protected write; returns
    the height it committed at (written or refused), None if its outcome is unknown."""
    value = f"c{i}-t{token}"
    tb = token_bytes(token)
    op = ops.txn([ops.compare(fence_key(name), "value", "<", tb)],
                 [ops.put_op(fence_key(name), tb), ops.put_op(data_key(name).encode(),
                                                                value.encode())])
    inv = clock.ms()
    t0 = time.monotonic()
    try:
        r = await c.commit_op(op)
    except ClientError as exc:  # outcome unknown: the write may or may not have happened
        res.kv_ops.append({"type": "kv", "process": f"c{i}", "op": "put",
                           "key": data_key(name), "value": value, "invoke": inv,
                           "complete": None})
        res.errors.append(f"c{i} fenced write {name}: {exc}")
        return None
    res.fenced_write_ms.append((time.monotonic() - t0) * 1000)
    height = int(r.get("height") or 0) or None
    res.max_height = max(res.max_height, height or 0)
    if not r["result"]["succeeded"]:
        res.fence_rejected += 1
        return height
    res.kv_ops.append({"type": "kv", "process": f"c{i}", "op": "put", "key": data_key(name),
                       "value": value, "invoke": inv, "complete": clock.ms()})
    return height


async def kv_client(i: int, c: AsyncClient, w: Workload, res: Result, clock: _Clock,
                    end: float, rng: random.Random) -> None:
    keys = w.kv_names() + [data_key(n) for n in w.lock_names()]
    n = 0
    while time.monotonic() < end:
        n += 1
        key = rng.choice(keys)
        is_put = key in w.kv_names() and rng.random() < 0.5
        inv = clock.ms()
        try:
            if is_put:
                value = f"k{i}-{n}"
                r = await c.put(key, value)
            else:
                r = await c.get(key, consistency="linearizable")
                value = r["value"]
        except ClientError as exc:
            if is_put:
                res.kv_ops.append({"type": "kv", "process": f"k{i}", "op": "put", "key": key,
                                   "value": value, "invoke": inv, "complete": None})
            res.errors.append(f"k{i} {'put' if is_put else 'get'} {key}: {exc}")
            continue
        res.max_height = max(res.max_height, int(r.get("height") or 0))
        res.kv_ops.append({"type": "kv", "process": f"k{i}", "op": "put" if is_put else "get",
                           "key": key, "value": value, "invoke": inv, "complete": clock.ms()})


async def staller(c: AsyncClient, w: Workload, res: Result, at_s: float) -> None:
    """Wait `at_s`, acquire the first lock under a kept-alive lease, then stop renewing and
    never release: the cluster must expire the lease and pass the lock on."""
    await trio.sleep(at_s)
    name = w.lock_names()[0]
    for _attempt in range(5):
        lease = await c.lease_grant(w.staller_ttl_s)
        dead = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_lease_keeper, c, lease, w.staller_ttl_s / 4, dead)
            try:
                token = await c.lock_acquire(name, lease, timeout=w.acquire_timeout_s)
            except ClientError as exc:
                res.errors.append(f"staller acquire: {exc}")
                token = None
            nursery.cancel_scope.cancel()  # stop renewing
        if token is not None:
            res.staller = {"lock": name, "lease": lease, "token": token,
                           "stopped_renewing_ms": time.time() * 1000}
            return


async def run_workload(urls: Sequence[str], w: Workload, key_dir: Path,
                       events_urls: Sequence[str] = (),
                       faults: Callable[[], Awaitable[None]] | None = None,
                       ) -> tuple[Result, list[list[dict]]]:
    """Run the workload; returns the client-side result and, per recorder URL, the app events
    from before the first setup write up to the last height any client saw."""
    res = Result()
    key_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncClient(list(urls), key_dir / "probe.key", verify="none") as probe:
        res.start_height = int((await probe.status())["height"]) + 1
    recorders = [EventRecorder(u, res.start_height) for u in events_urls]
    async with trio.open_nursery() as outer:
        for r in recorders:
            await outer.start(r.run)
        await prepare(urls, key_dir, w, res)
        clock = _Clock()
        start = time.monotonic()
        end = start + w.duration_s
        clients = [AsyncClient(list(urls), key_dir / f"c{i}.key", verify=w.verify,
                               timeout=30.0) for i in range(w.clients + 1)]
        try:
            async with trio.open_nursery() as nursery:
                if faults is not None:
                    nursery.start_soon(faults)
                for i in range(w.clients):
                    rng = random.Random(w.seed * 1000 + i)
                    fn = kv_client if i < w.kv_clients else lock_client
                    nursery.start_soon(fn, i, clients[i], w, res, clock, end, rng)
                if w.staller_at_s is not None:
                    nursery.start_soon(staller, clients[-1], w, res, w.staller_at_s)
        finally:
            for c in clients:
                await c.aclose()
        res.elapsed_s = time.monotonic() - start
        if w.staller_at_s is not None and res.staller is not None:
            # wait (bounded) for the staller's lease to expire in agreed time
            async with AsyncClient(list(urls), key_dir / "probe.key", verify="none") as probe:
                with trio.move_on_after(w.staller_ttl_s + 30):
                    while True:
                        try:
                            st = await probe.call("lease_ttl", id=res.staller["lease"])
                        except ClientError:
                            break  # not_found: expired
                        res.max_height = max(res.max_height, int(st.get("height") or 0))
                        await trio.sleep(0.1)
                res.max_height = max(res.max_height, int((await probe.status())["height"]))
        # a sentinel write after everything: its event proves the stream is complete to there
        sentinel = f"{w.prefix}/sentinel".encode()
        async with AsyncClient(list(urls), key_dir / "probe.key", verify="none") as probe:
            sr = await probe.put(sentinel, str(time.time()))
        res.max_height = max(res.max_height, int(sr["height"]))
        for r in recorders:
            got = await r.wait_for(lambda e: e["kind"] == "put"
                                   and e.get("key") == sentinel.decode(), 30.0)
            if got is None:
                res.errors.append(f"recorder {r.url} never saw the sentinel write at height "
                                  f"{sr['height']}: {r.error}")
        outer.cancel_scope.cancel()
    return res, [r.snapshot(res.max_height) for r in recorders]


# ---------------------------------------------------------------- analysis


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def staller_report(res: Result, events: Sequence[dict]) -> dict | None:
    """Where the staller's lease expired (agreed time) vs its deadline, and who got the lock
    next. None if there was no staller grant."""
    if res.staller is None:
        return None
    lease, name = res.staller["lease"], res.staller["lock"]
    deadline = None
    lost = None
    nxt = None
    for e in events:
        if e["kind"] in ("lease_granted", "lease_renewed") and e["lease"] == lease:
            deadline = e["deadline_ms"]
        elif e["kind"] == "lock_lost" and e["lease"] == lease and e["key"] == name:
            lost = e
        elif (lost is not None and nxt is None and e["kind"] == "lock_granted"
              and e["key"] == name):
            nxt = e
    out: dict[str, Any] = {**res.staller, "deadline_ms": deadline}
    if lost is not None:
        out.update(lost_height=lost["height"], lost_time_ms=lost["time_ms"],
                   lost_revision=lost["revision"], lost_tx_index=lost["tx_index"],
                   lost_after_deadline_ms=lost["time_ms"] - deadline if deadline else None)
    if nxt is not None:
        out.update(next_token=nxt["token"], next_lease=nxt["lease"], next_height=nxt["height"],
                   next_same_transition=nxt["revision"] == lost["revision"])
    return out


def summary(w: Workload, res: Result, check: dict | None) -> dict:
    el = max(res.elapsed_s, 1e-9)
    return {
        "clients": w.clients, "lock_clients": w.clients - w.kv_clients, "locks": w.locks,
        "duration_s": round(el, 2),
        "acquires": len(res.acquire_ms), "releases": len(res.release_ms),
        "acquire_per_s": round(len(res.acquire_ms) / el, 2),
        "release_per_s": round(len(res.release_ms) / el, 2),
        "cycles_per_s": round(len(res.release_ms) / el, 2),
        "acquire_p50_ms": round(pct(res.acquire_ms, 50), 1),
        "acquire_p99_ms": round(pct(res.acquire_ms, 99), 1),
        "release_p50_ms": round(pct(res.release_ms, 50), 1),
        "release_p99_ms": round(pct(res.release_ms, 99), 1),
        "fenced_write_p50_ms": round(pct(res.fenced_write_ms, 50), 1),
        "kv_ops": len(res.kv_ops),
        "fence_rejected": res.fence_rejected,
        "fence_rejected_after_loss": res.fence_rejected_after_loss,
        "release_conflicts": res.release_conflicts,
        "lease_losses": res.lease_losses, "errors": len(res.errors),
        "check": None if check is None else check.get("result"),
    }


# ---------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=4, help="validators of a fresh testnet")
    p.add_argument("--clients", type=int, default=8, help="concurrent lock clients")
    p.add_argument("--kv-clients", type=int, default=0,
                   help="extra clients doing plain put/linearizable get")
    p.add_argument("--locks", type=int, default=3)
    p.add_argument("--duration", type=float, default=15.0, help="seconds")
    p.add_argument("--ttl", type=float, default=5.0, help="lease ttl (s) of lock clients")
    p.add_argument("--hold-ms", type=float, default=20.0)
    p.add_argument("--url", action="append", default=[],
                   help="RPC URL of a running testnet (repeatable); default: a fresh one")
    p.add_argument("--dir", help="testnet dir for a fresh testnet (default: a temp dir)")
    p.add_argument("--base-port", type=int, default=None)
    p.add_argument("--history", help="write the recorded history (JSON lines) here")
    p.add_argument("--no-check", action="store_true", help="skip recording and checking")
    p.add_argument("--verify", default="certificate", choices=("certificate", "replies", "none"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object")


def run(args: argparse.Namespace) -> int:
    w = Workload(clients=args.clients + args.kv_clients, kv_clients=args.kv_clients,
                 locks=args.locks, duration_s=args.duration, ttl_s=args.ttl,
                 hold_ms=args.hold_ms, seed=args.seed, verify=args.verify,
                 prefix=f"bl{int(time.time())}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-locks-"))
    fresh = not args.url
    d = Path(args.dir) if args.dir else tmp / "testnet"
    try:
        if fresh:
            from testnet import launcher

            kw = {"base_port": args.base_port} if args.base_port else {}
            m = launcher.up(d, args.nodes, open_chain=True, log_level="warning", **kw)
            urls = [n["rpc"] for n in m["nodes"]]
        else:
            urls = args.url
        try:
            rec = [] if args.no_check else [urls[0]]
            res, evs = trio.run(run_workload, urls, w, tmp / "keys", rec)
        finally:
            if fresh:
                launcher.down(d)
        check = None
        if not args.no_check:
            lines = build_history(res, evs[0], w.lock_names())
            check = check_history(lines)
            if args.history:
                Path(args.history).write_text("".join(json.dumps(x) + "\n" for x in lines))
        out = summary(w, res, check)
        if fresh:
            out["nodes"] = args.nodes
        else:
            out["urls"] = len(urls)
        if check is not None and check["result"] != "ok":
            out["check_detail"] = check
        if args.json:
            print(json.dumps(out))
        else:
            for k, v in out.items():
                print(f"{k:>20}: {v}")
        return 0 if check is None or check["result"] == "ok" else 1
    except Exception as exc:
        print(f"bench-locks: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
