"""The nemesis run's clients: concurrent KV and lock clients that record every op.

KV clients pick a register key and do a write (unique value), a linearizable read (a range
tx ordered by consensus), a CAS (txn: compare value == the last value this client saw, put a
unique value; the failure branch reads the key, so a failed CAS says what it saw) or an add
(a put of a fresh key under the client's set prefix, checked against the final read). Lock
clients hold a lease (kept alive in the background), acquire a lock, write to the protected
resource with the fencing token, hold briefly and release.

Every op is one dict in `Recorder.ops` (Jepsen's shape): process, f, key, value, expected,
observed, type ok|fail|info, invoke, complete (seconds on the run's clock), tx (the hash of
an acknowledged tx). `fail` only where the op surely had no effect (the chain executed it
and refused it); no answer, a timeout or a refusal before the commit is `info`: unknown.
Imports: stdlib, trio, bftnode.client, bftnode.app.ops, testnet.protected.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from bftnode.app import ops as O
from bftnode.client import AsyncClient, ClientError, TxFailed
from testnet import protected

INIT = "init"


@dataclass
class Workload:
    clients: int = 8
    lock_clients: int = 3
    keys: int = 6
    locks: int = 2
    op_timeout_s: float = 4.0  # shorter than most faults: ops left open (info) get checked
    lease_ttl_s: float = 3.0
    hold_s: tuple[float, float] = (0.05, 0.3)
    prefix: str = "nm"

    def reg_keys(self) -> list[str]:
        return [f"{self.prefix}/r{i}" for i in range(self.keys)]

    def lock_names(self) -> list[str]:
        return [f"{self.prefix}-lock{i}" for i in range(self.locks)]

    def set_prefix(self, proc: str) -> str:
        return f"{self.prefix}/set/{proc}/"


@dataclass
class Recorder:
    clock: Callable[[], float]
    ops: list[dict] = field(default_factory=list)
    leases: dict[int, str] = field(default_factory=dict)  # lease id -> lock client
    errors: dict[str, int] = field(default_factory=dict)

    def invoke(self, process: str, f: str, key: str | None, **kw: Any) -> dict:
        op = {"process": process, "f": f, "key": key, "invoke": self.clock(),
              "complete": None, "type": "info", **kw}
        self.ops.append(op)
        return op

    def done(self, op: dict, typ: str, **kw: Any) -> None:
        op.update(type=typ, complete=self.clock(), **kw)

    def unknown(self, op: dict, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        op.update(type="info", complete=None, error=f"{name}: {exc}"[:160],
                  gave_up=self.clock())


def _value_of(kvs: Any) -> str | None:
    return kvs[0].get("value") if kvs else None


async def kv_client(i: int, c: AsyncClient, w: Workload, rec: Recorder, end: float,
                    rng: random.Random) -> None:
    proc = f"c{i}"
    seen: dict[str, str | None] = {}
    n = 0
    while time.monotonic() < end:
        n += 1
        key = rng.choice(w.reg_keys())
        r = rng.random()
        if r < 0.3:
            op = rec.invoke(proc, "write", key, value=f"{proc}-{n}")
            body = O.put(key.encode(), op["value"].encode())
        elif r < 0.6:
            op = rec.invoke(proc, "read", key)
            body = O.range_(key.encode())
        elif r < 0.9:
            op = rec.invoke(proc, "cas", key, expected=seen.get(key, INIT), value=f"{proc}-{n}")
            body = O.txn([O.compare(key.encode(), "value", "=", op["expected"].encode())],
                         [O.put_op(key.encode(), op["value"].encode())],
                         [O.range_op(key.encode())])
        else:
            k = f"{w.set_prefix(proc)}{n}"
            op = rec.invoke(proc, "add", k, value="1")
            body = O.put(k.encode(), b"1")
        try:
            res = await c.commit_op(body, timeout=w.op_timeout_s)
        except TxFailed as exc:  # executed and refused by the app: no effect
            rec.done(op, "fail", error=str(exc)[:160])
            continue
        except ClientError as exc:
            rec.unknown(op, exc)
            await trio.sleep(rng.uniform(0.05, 0.2))  # a refusal comes back at once: back off
            continue
        result = res.get("result") or {}
        kw: dict[str, Any] = {"tx": res.get("hash"), "height": res.get("height")}
        if op["f"] == "read":
            seen[key] = _value_of(result.get("kvs"))
            rec.done(op, "ok", value=seen[key], **kw)
        elif op["f"] == "cas" and not result.get("succeeded"):
            responses = result.get("responses") or [{}]
            seen[key] = _value_of(responses[0].get("kvs"))
            rec.done(op, "fail", observed=seen[key], **kw)
        else:
            if op["f"] in ("write", "cas"):
                seen[key] = op["value"]
            rec.done(op, "ok", **kw)


async def _keep_lease(c: AsyncClient, lease: int, every: float, dead: trio.Event) -> None:
    while not dead.is_set():
        await trio.sleep(every)
        try:
            await c.lease_keepalive(lease)
        except TxFailed:  # not found: it expired
            dead.set()
        except ClientError:
            continue


async def lock_client(i: int, c: AsyncClient, w: Workload, rec: Recorder, end: float,
                      rng: random.Random, resource: tuple[str, int]) -> None:
    proc = f"L{i}"
    while time.monotonic() < end:
        op = rec.invoke(proc, "lease", None)
        try:
            lease = await c.lease_grant(w.lease_ttl_s)
        except ClientError as exc:
            rec.unknown(op, exc)
            await trio.sleep(0.2)
            continue
        rec.leases[lease] = proc
        rec.done(op, "ok", value=lease)
        dead = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_lease, c, lease, w.lease_ttl_s / 3, dead)
            while time.monotonic() < end and not dead.is_set():
                await _lock_round(proc, c, w, rec, rng, resource, lease, dead)
            nursery.cancel_scope.cancel()
        if not dead.is_set():
            with trio.CancelScope(shield=True):
                try:
                    await c.lease_revoke(lease)
                except ClientError:
                    pass


async def _lock_round(proc: str, c: AsyncClient, w: Workload, rec: Recorder,
                      rng: random.Random, resource: tuple[str, int], lease: int,
                      dead: trio.Event) -> None:
    name = rng.choice(w.lock_names())
    op = rec.invoke(proc, "acquire", name, lease=lease)
    try:
        token = await c.lock_acquire(name, lease, timeout=w.op_timeout_s)
    except TxFailed as exc:  # the lease is gone
        rec.done(op, "fail", error=str(exc)[:160])
        dead.set()
        return
    except ClientError as exc:
        rec.unknown(op, exc)
        await trio.sleep(rng.uniform(0.05, 0.2))
        return
    rec.done(op, "ok", value=token)
    for part in ("begin", "end"):
        wop = rec.invoke(proc, "fence", name, value=token, part=part)
        try:
            ok = await protected.write(resource, name, token, proc, part)
        except (OSError, trio.TooSlowError) as exc:
            rec.unknown(wop, exc)
            break
        rec.done(wop, "ok" if ok else "fail")
        if not ok:
            break
        if part == "begin":
            await trio.sleep(rng.uniform(*w.hold_s))
    rop = rec.invoke(proc, "release", name, value=token)
    try:
        await c.lock_release(name, token)
        rec.done(rop, "ok")
    except TxFailed as exc:  # lost meanwhile (the lease expired)
        rec.done(rop, "fail", error=str(exc)[:160])
    except ClientError as exc:
        rec.unknown(rop, exc)


async def prepare(c: AsyncClient, w: Workload) -> None:
    for k in w.reg_keys():
        await c.put(k, INIT)


async def run_clients(urls: list[str], keys_dir: Any, w: Workload, rec: Recorder,
                      duration_s: float, seed: int, resource: tuple[str, int],
                      verify: str = "certificate") -> None:
    """All clients until `duration_s` has passed (ops in flight then finish or time out)."""
    end = time.monotonic() + duration_s
    # each client prefers a different node first, as separate users would
    clients = [AsyncClient(urls[i % len(urls):] + urls[:i % len(urls)],
                           keys_dir / f"c{i}.key", verify=verify, timeout=w.op_timeout_s)
               for i in range(w.clients)]
    try:
        async with trio.open_nursery() as nursery:
            for i, c in enumerate(clients):
                rng = random.Random(seed * 1000 + i)
                if i < w.clients - w.lock_clients:
                    nursery.start_soon(kv_client, i, c, w, rec, end, rng)
                else:
                    nursery.start_soon(lock_client, i, c, w, rec, end, rng, resource)
    finally:
        for c in clients:
            await c.aclose()
