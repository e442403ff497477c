"""History checker for users' recorded histories: KV linearizability and lock invariants.

(a) `check_kv`: a Wing–Gong linearizability search with Lowe's memoization (the Porcupine
    algorithm) for read/write registers, partitioned per key (P-compositionality), with a step
    budget per key: past it the answer is "unknown", never a guess.
(b) `check_locks`: over lock grants/releases in the agreed order: no two holders overlap,
    fencing tokens strictly increase per lock, FIFO fairness, releases/expiries only by the
    holder, expiry only after the agreed deadline and no later than the first tx of the first
    block past it (when lease deadlines are in the history).

Input: JSON lines, one object per line (blank lines and lines starting with # are skipped):
    {"type": "kv", "process": "c1", "op": "put"|"get"|"delete", "key": "x", "value": "1"|null,
     "invoke": 10, "complete": 25}            # complete null/absent: outcome unknown
    {"type": "init", "key": "x", "value": "0"}  # initial value (default: missing = null)
    {"type": "lock", "event": "request"|"grant"|"release"|"expire"|"cancel",
     "lock": "L", "holder": "<lease or client id>", "token": 7, "time": 1500,
     "height": 3, "revision": 9, "tx_index": -1, "deadline": 1400}
    {"type": "lease", "event": "grant"|"renew"|"expire"|"revoke", "lease": "<id>",
     "deadline": 1400, "time": 1000, "height": 2, "tx_index": 0}
Lock and lease lines must be in agreed (log) order. CLI: `python -m testnet.history FILE`
prints one JSON report; exit 0 = ok, 1 = violation, 2 = unknown or bad input.

Imports: stdlib only (`events_to_history` duck-types bftnode.app.AppEvent).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

OK, VIOLATION, UNKNOWN = "ok", "violation", "unknown"
DEFAULT_MAX_STEPS = 1_000_000  # per key


class HistoryError(ValueError):
    """Malformed history input (the message names the line and the problem)."""


# ---------------------------------------------------------------- KV linearizability


@dataclass(frozen=True, slots=True)
class KvOp:
    id: int
    process: Any
    op: str  # "put" | "get" (a delete is a put of None)
    key: Any
    value: Any
    invoke: float
    complete: float  # math.inf when the outcome is unknown


@dataclass(slots=True)
class _Node:
    op: KvOp | None
    is_call: bool
    match: _Node | None = None
    prev: _Node | None = None
    next: _Node | None = None


@dataclass
class KeyResult:
    key: Any
    result: str
    ops: int
    steps: int
    detail: str = ""
    linearized: int = 0  # longest prefix found
    stuck_op: KvOp | None = None


def _register_step(state: Any, op: KvOp) -> tuple[bool, Any]:
    if op.op == "put":
        return True, op.value
    return state == op.value, state


def check_register(
    ops: Sequence[KvOp], initial: Any = None, max_steps: int = DEFAULT_MAX_STEPS,
    step: Callable[[Any, KvOp], tuple[bool, Any]] = _register_step,
) -> KeyResult:
    """Is this single-key history linearizable? ok / violation / unknown. `step(state, op)`
    is the object's model: (op legal in `state`, state after it); default a register."""
    key = ops[0].key if ops else None
    # Calls sort before returns at equal times: touching intervals count as concurrent.
    entries = [(o.invoke, 0, i) for i, o in enumerate(ops)] + [
        (o.complete, 1, i) for i, o in enumerate(ops)
    ]
    entries.sort()
    head = _Node(None, False)
    calls: dict[int, _Node] = {}
    last = head
    for _t, kind, i in entries:
        node = _Node(ops[i], kind == 0)
        if kind == 0:
            calls[i] = node
        else:
            calls[i].match = node
        node.prev, last.next = last, node
        last = node

    def lift(n: _Node) -> None:
        n.prev.next = n.next
        if n.next:
            n.next.prev = n.prev
        m = n.match
        m.prev.next = m.next
        if m.next:
            m.next.prev = m.prev

    def unlift(n: _Node) -> None:
        m = n.match
        m.prev.next = m
        if m.next:
            m.next.prev = m
        n.prev.next = n
        if n.next:
            n.next.prev = n

    index = {o.id: i for i, o in enumerate(ops)}
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[_Node, Any]] = []
    linearized = 0
    state = initial
    entry = head.next
    steps = best = 0
    stuck: KvOp | None = None
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, UNKNOWN, len(ops), steps,
                             f"search budget of {max_steps} steps exhausted", best)
        assert entry is not None
        if entry.is_call:
            ok, new_state = step(state, entry.op)
            if ok:
                bit = 1 << index[entry.op.id]
                new_lin = linearized | bit
                if (new_lin, new_state) not in cache:
                    cache.add((new_lin, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, new_lin
                    best = max(best, len(stack))
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                stuck = entry.op
                break
            entry, state = stack.pop()
            linearized &= ~(1 << index[entry.op.id])
            unlift(entry)
            entry = entry.next
    if head.next is None:
        return KeyResult(key, OK, len(ops), steps, "", len(ops))
    return KeyResult(
        key, VIOLATION, len(ops), steps,
        f"no linearization: op {stuck.id} ({stuck.process} {stuck.op} {stuck.value!r}, "
        f"[{stuck.invoke}, {stuck.complete}]) cannot be ordered; longest linearizable prefix "
        f"has {best} of {len(ops)} ops",
        best, stuck,
    )


def check_kv(
    ops: Iterable[KvOp], initial: dict | None = None, max_steps: int = DEFAULT_MAX_STEPS
) -> dict:
    """Check every key separately (linearizability is compositional)."""
    per_key: dict[Any, list[KvOp]] = {}
    for o in ops:
        if o.op == "get" and o.complete == math.inf:
            continue  # a read with no answer says nothing
        per_key.setdefault(o.key, []).append(o)
    initial = initial or {}
    results = [check_register(v, initial.get(k), max_steps) for k, v in per_key.items()]
    verdict = OK
    if any(r.result == UNKNOWN for r in results):
        verdict = UNKNOWN
    if any(r.result == VIOLATION for r in results):
        verdict = VIOLATION
    return {
        "result": verdict,
        "keys": len(results),
        "ops": sum(r.ops for r in results),
        "violations": [
            {"key": r.key, "detail": r.detail, "op": r.stuck_op.id if r.stuck_op else None}
            for r in results if r.result == VIOLATION
        ],
        "unknown": [{"key": r.key, "detail": r.detail} for r in results if r.result == UNKNOWN],
    }


# ---------------------------------------------------------------- lock invariants


@dataclass
class _LockState:
    holder: Any = None
    token: int = 0
    last_token: int = 0
    queue: list = field(default_factory=list)


def check_locks(events: Iterable[dict]) -> dict:
    """Lock invariants over lock/lease events in agreed order (see the module docstring)."""
    locks: dict[Any, _LockState] = {}
    deadlines: dict[Any, int] = {}  # live leases -> deadline (from lease events)
    violations: list[dict] = []
    last_pos = (-math.inf, -math.inf)
    grants = 0

    def bad(ev: dict, kind: str, detail: str) -> None:
        violations.append({"kind": kind, "detail": detail, "line": ev.get("_line")})

    for ev in events:
        pos = (ev.get("height", last_pos[0]), ev.get("revision", last_pos[1]))
        if pos < last_pos:
            bad(ev, "order", f"event at (height, revision) {pos} after {last_pos}")
        last_pos = pos
        t = ev.get("time")
        if ev.get("tx_index", -1) >= 0 and t is not None:
            late = sorted(str(k) for k, d in deadlines.items() if d < t)
            if late:
                bad(ev, "late-expiry", f"leases {late} passed their deadline before time {t} "
                    f"but had not expired when a tx ran at that time")
                for k in late:
                    deadlines.pop(k, None)
        if ev["type"] == "lease":
            kind = ev["event"]
            if kind in ("grant", "renew"):
                deadlines[ev["lease"]] = ev["deadline"]
            elif kind == "expire":
                d = ev.get("deadline", deadlines.get(ev["lease"]))
                if d is not None and t is not None and not t > d:
                    bad(ev, "early-expiry", f"lease {ev['lease']} expired at time {t} "
                        f"<= its deadline {d}")
                deadlines.pop(ev["lease"], None)
            else:
                deadlines.pop(ev["lease"], None)
            continue
        st = locks.setdefault(ev["lock"], _LockState())
        kind, who = ev["event"], ev.get("holder")
        name = ev["lock"]
        if kind == "request":
            if who in st.queue or who == st.holder:
                bad(ev, "duplicate-request", f"{who} already waits on or holds {name}")
            else:
                st.queue.append(who)
        elif kind == "cancel":
            if who in st.queue:
                st.queue.remove(who)
        elif kind == "grant":
            grants += 1
            token = ev["token"]
            if st.holder is not None:
                bad(ev, "overlap", f"{name} granted to {who} (token {token}) while {st.holder} "
                    f"(token {st.token}) still holds it")
            if token <= st.last_token:
                bad(ev, "token-order", f"{name} token {token} does not exceed earlier token "
                    f"{st.last_token}")
            if st.queue and st.queue[0] != who:
                bad(ev, "fifo", f"{name} granted to {who} but {st.queue[0]} waited longer")
            if who in st.queue:
                st.queue.remove(who)
            st.holder, st.token = who, token
            st.last_token = max(st.last_token, token)
        elif kind in ("release", "expire"):
            token = ev.get("token", st.token)
            if st.holder is None or st.holder != who or token != st.token:
                bad(ev, "not-holder", f"{name} {kind} by {who} (token {token}) but the holder "
                    f"is {st.holder} (token {st.token})")
            if kind == "expire":
                d = ev.get("deadline", deadlines.get(who))
                if d is not None and t is not None and not t > d:
                    bad(ev, "early-expiry", f"{name} holder {who} expired at time {t} <= its "
                        f"deadline {d}")
            if st.holder == who:
                st.holder, st.token = None, 0
        else:
            raise HistoryError(f"line {ev.get('_line')}: unknown lock event {kind!r}")
    return {
        "result": VIOLATION if violations else OK,
        "locks": len(locks),
        "grants": grants,
        "violations": violations,
    }


# ---------------------------------------------------------------- input


def _time(v: Any, line: int, name: str, allow_none: bool) -> float:
    if v is None and allow_none:
        return math.inf
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise HistoryError(f"line {line}: {name} must be a number")
    return v


def parse(lines: Iterable[str]) -> tuple[list[KvOp], dict, list[dict]]:
    """Parse JSON lines into (kv ops, initial values, lock/lease events)."""
    kv: list[KvOp] = []
    initial: dict = {}
    lock_events: list[dict] = []
    for n, raw in enumerate(lines, 1):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            ev = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"line {n}: not JSON: {exc}") from exc
        if not isinstance(ev, dict) or "type" not in ev:
            raise HistoryError(f"line {n}: expected an object with a \"type\"")
        try:
            kind = ev["type"]
            if kind == "kv":
                op = ev["op"]
                if op not in ("put", "get", "delete"):
                    raise HistoryError(f"line {n}: op must be put, get or delete, not {op!r}")
                invoke = _time(ev["invoke"], n, "invoke", False)
                complete = _time(ev.get("complete"), n, "complete", True)
                if complete < invoke:
                    raise HistoryError(f"line {n}: complete {complete} < invoke {invoke}")
                kv.append(KvOp(len(kv), ev.get("process"), "get" if op == "get" else "put",
                               _hashable(ev["key"]),
                               None if op == "delete" else _hashable(ev.get("value")),
                               invoke, complete))
            elif kind == "init":
                initial[_hashable(ev["key"])] = _hashable(ev.get("value"))
            elif kind in ("lock", "lease"):
                lock_events.append({**ev, "_line": n})
            else:
                raise HistoryError(f"line {n}: unknown type {kind!r}")
        except KeyError as exc:
            raise HistoryError(f"line {n}: missing field {exc}") from exc
    return kv, initial, lock_events


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v


def check_lines(lines: Iterable[str], max_steps: int = DEFAULT_MAX_STEPS) -> dict:
    kv, initial, lock_events = parse(lines)
    report: dict = {"result": OK}
    if kv:
        report["kv"] = check_kv(kv, initial, max_steps)
    if lock_events:
        report["locks"] = check_locks(lock_events)
    parts = [p["result"] for p in (report.get("kv"), report.get("locks")) if p]
    if VIOLATION in parts:
        report["result"] = VIOLATION
    elif UNKNOWN in parts:
        report["result"] = UNKNOWN
    return report


# ---------------------------------------------------------------- recording the app's events


def events_to_history(events: Iterable[Any], scope: str = "lock") -> list[dict]:
    """Lock/lease history lines from `bftnode.app.AppEvent`s (in execution order).

    Holders are lease ids; a lock lost at a block start (tx_index -1) is an expiry, a lock
    lost inside a tx (its lease was revoked) is a release."""
    out: list[dict] = []
    deadlines: dict[int, int] = {}
    for e in events:
        base = {"height": e.height, "revision": e.revision, "time": e.time_ms,
                "tx_index": e.tx_index}
        if e.kind in ("lease_granted", "lease_renewed"):
            deadlines[e.lease] = e.deadline_ms
            out.append({"type": "lease", "event": "grant" if e.kind == "lease_granted"
                        else "renew", "lease": e.lease, "deadline": e.deadline_ms, **base})
        elif e.kind in ("lease_expired", "lease_revoked"):
            deadlines.pop(e.lease, None)
            out.append({"type": "lease", "event": "expire" if e.kind == "lease_expired"
                        else "revoke", "lease": e.lease, "deadline": e.deadline_ms, **base})
        elif e.kind.startswith("lock_") and e.scope == scope:
            name = e.key.decode("utf-8", "backslashreplace")
            ev = {"type": "lock", "lock": name, "holder": e.lease, **base}
            if e.kind == "lock_queued":
                ev["event"] = "request"
            elif e.kind == "lock_dequeued":
                ev["event"] = "cancel"
            elif e.kind == "lock_granted":
                ev.update(event="grant", token=e.token)
            elif e.kind == "lock_released" or (e.kind == "lock_lost" and e.tx_index >= 0):
                ev.update(event="release", token=e.token)
            elif e.kind == "lock_lost":
                ev.update(event="expire", token=e.token, deadline=deadlines.get(e.lease))
            else:
                continue
            out.append(ev)
    return out


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="JSON-lines history ('-' = stdin)")
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                        help="search budget per key before answering 'unknown'")


def run(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            report = check_lines(sys.stdin, args.max_steps)
        else:
            with open(args.file, encoding="utf-8") as f:
                report = check_lines(f, args.max_steps)
    except (OSError, HistoryError) as exc:
        print(json.dumps({"result": "error", "error": str(exc)}))
        return 2
    print(json.dumps(report, default=str))
    return {OK: 0, VIOLATION: 1}.get(report["result"], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
