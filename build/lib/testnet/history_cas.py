"""Linearizability of compare-and-set registers: the nemesis run's KV history checker.

Extends `testnet.history` (its Wing–Gong–Lowe search, per key) with a CAS register model:
    write v          state := v
    read -> v        legal iff state == v
    cas e -> n  ok   legal iff state == e; state := n
    cas e  fail      legal iff state != e (and state == the value the failed txn read, when
                     it read one: the txn's failure branch is a range of the key)
    cas e -> n  ?    outcome unknown: state := n if state == e, else unchanged
Ops are dicts (one JSON line each in the nemesis history):
    {"f": "write"|"read"|"cas", "key": k, "value": v, "expected": e, "observed": o,
     "type": "ok"|"fail"|"info", "invoke": ms, "complete": ms|null, "process": p}
`type` follows Jepsen: ok = it happened, fail = it did not, info = unknown (timeouts: the op
stays open until the end of time). Failed writes and reads that did not answer say nothing and
are dropped.

Speed: the search is per key (linearizability is compositional), and an `info` write whose
value no op ever observed is dropped before the search (exact when every written value is
unique per key, which the nemesis workload guarantees and `check_cas` verifies per value: an
unobserved effect can always be ordered last, so dropping it changes no verdict). Without that
pruning each open write is a branch at every later point of the search.
Imports: stdlib, testnet.history.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from testnet import history as H

_UNSEEN = object()  # a failed cas that did not read the value


def cas_step(state: Any, op: H.KvOp) -> tuple[bool, Any]:
    """The CAS register model: (op legal in `state`, the state after it)."""
    kind = op.op
    if kind == "put":
        return True, op.value
    if kind == "get":
        return state == op.value, state
    expected, other = op.value
    if kind == "cas":
        return state == expected, other
    if kind == "cas-fail":
        return state != expected and (other is _UNSEEN or state == other), state
    if kind == "cas?":
        return True, other if state == expected else state
    raise ValueError(f"unknown op kind {kind!r}")


def to_kv_ops(ops: Iterable[dict]) -> list[H.KvOp]:
    """History dicts -> KvOps for the search (dropping those that say nothing)."""
    out: list[H.KvOp] = []
    for d in ops:
        f, typ = d["f"], d["type"]
        if typ not in ("ok", "fail", "info"):
            raise H.HistoryError(f"op {d}: type must be ok, fail or info")
        done = math.inf if typ == "info" or d.get("complete") is None else float(d["complete"])
        if f == "write":
            if typ == "fail":
                continue
            kind, value = "put", d["value"]
        elif f == "read":
            if typ != "ok":
                continue
            kind, value = "get", d["value"]
        elif f == "cas":
            if typ == "ok":
                kind, value = "cas", (d["expected"], d["value"])
            elif typ == "fail":
                kind = "cas-fail"
                value = (d["expected"], d["observed"] if "observed" in d else _UNSEEN)
            else:
                kind, value = "cas?", (d["expected"], d["value"])
        else:
            continue
        out.append(H.KvOp(len(out), d.get("process"), kind, d["key"], value,
                          float(d["invoke"]), done))
    return out


def _written(op: H.KvOp) -> Any:
    return op.value if op.op == "put" else op.value[1] if op.op in ("cas", "cas?") else None


def prune_unobserved(ops: list[H.KvOp], initial: Any) -> tuple[list[H.KvOp], int]:
    """Drop open (info) writes whose value nothing observed (see the module docstring)."""
    writes = Counter(_written(o) for o in ops if o.op in ("put", "cas", "cas?"))
    seen: set[Any] = {initial}
    for o in ops:
        if o.op == "get":
            seen.add(o.value)
        elif o.op in ("cas", "cas?", "cas-fail"):
            seen.add(o.value[0])
            if o.op == "cas-fail" and o.value[1] is not _UNSEEN:
                seen.add(o.value[1])
    keep = [o for o in ops if not (o.complete == math.inf and o.op in ("put", "cas?")
                                   and writes[_written(o)] == 1 and _written(o) not in seen)]
    return [H.KvOp(i, o.process, o.op, o.key, o.value, o.invoke, o.complete)
            for i, o in enumerate(keep)], len(ops) - len(keep)


def check_cas(ops: Iterable[dict], initial: dict[Any, Any] | None = None,
              max_steps: int = H.DEFAULT_MAX_STEPS) -> dict[str, Any]:
    """Check every key's CAS-register history; `initial`: key -> value before the history."""
    t0 = time.perf_counter()
    initial = initial or {}
    per_key: dict[Any, list[H.KvOp]] = {}
    for o in to_kv_ops(ops):
        per_key.setdefault(o.key, []).append(o)
    results, pruned, unique = [], 0, True
    for key, kops in sorted(per_key.items(), key=lambda kv: str(kv[0])):
        counts = Counter(_written(o) for o in kops if o.op in ("put", "cas", "cas?"))
        if any(n > 1 for n in counts.values()):
            unique = False  # pruning is only exact for unique values
        else:
            kops, n = prune_unobserved(kops, initial.get(key))
            pruned += n
        results.append(H.check_register(kops, initial.get(key), max_steps, step=cas_step))
    verdict = H.OK
    if any(r.result == H.UNKNOWN for r in results):
        verdict = H.UNKNOWN
    if any(r.result == H.VIOLATION for r in results):
        verdict = H.VIOLATION
    return {
        "result": verdict,
        "keys": len(results),
        "ops": sum(r.ops for r in results),
        "pruned_open_writes": pruned,
        "unique_values": unique,
        "steps": sum(r.steps for r in results),
        "violations": [{"key": r.key, "detail": r.detail} for r in results
                       if r.result == H.VIOLATION],
        "unknown": [{"key": r.key, "detail": r.detail} for r in results
                    if r.result == H.UNKNOWN],
        "checker_s": round(time.perf_counter() - t0, 4),
    }


def check_set(adds: Iterable[dict], final: Iterable[str] | None) -> dict[str, Any]:
    """No acknowledged write lost: every ok add's key is in the final read (`final`, the keys
    present at the end); an add present that was never attempted is a phantom."""
    if final is None:
        return {"result": H.UNKNOWN, "detail": "no final read"}
    present = set(final)
    attempted = {a["key"] for a in adds}
    ok = {a["key"] for a in adds if a["type"] == "ok"}
    lost = sorted(ok - present)
    phantom = sorted(present - attempted)
    return {"result": H.VIOLATION if lost or phantom else H.OK,
            "acknowledged": len(ok), "present": len(present),
            "info_present": len((attempted - ok) & present),
            "lost": len(lost), "lost_keys": lost[:20], "phantom": phantom[:20]}
