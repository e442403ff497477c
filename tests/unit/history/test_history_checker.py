"""The history checker accepts valid histories and rejects planted violations."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from testnet.history import (
    OK,
    UNKNOWN,
    VIOLATION,
    HistoryError,
    KvOp,
    check_kv,
    check_lines,
    check_locks,
    check_register,
)


def op(i, proc, kind, value, invoke, complete, key="x"):
    return KvOp(i, proc, kind, key, value, invoke, complete)


# ---------------------------------------------------------------- linearizability


def test_sequential_history_is_linearizable():
    h = [op(0, "a", "put", 1, 0, 1), op(1, "b", "get", 1, 2, 3), op(2, "a", "put", 2, 4, 5),
         op(3, "b", "get", 2, 6, 7)]
    assert check_register(h).result == OK


def test_concurrent_reads_may_see_either_side_of_a_concurrent_write():
    h = [op(0, "a", "put", 1, 0, 10), op(1, "b", "get", None, 1, 2), op(2, "c", "get", 1, 3, 4),
         op(3, "d", "get", 1, 11, 12)]
    assert check_register(h).result == OK


def test_a_stale_read_after_a_completed_write_is_a_violation():
    h = [op(0, "a", "put", 1, 0, 1), op(1, "a", "put", 2, 2, 3), op(2, "b", "get", 1, 4, 5)]
    res = check_register(h)
    assert res.result == VIOLATION and res.stuck_op is not None
    assert "no linearization" in res.detail


def test_reads_going_back_in_time_across_clients_are_a_violation():
    # the write of 2 is concurrent with both reads, but once b saw 2, c (later) cannot see 1
    h = [op(0, "a", "put", 1, 0, 1), op(1, "a", "put", 2, 2, 20), op(2, "b", "get", 2, 3, 4),
         op(3, "c", "get", 1, 5, 6)]
    assert check_register(h).result == VIOLATION


def test_a_write_with_unknown_outcome_may_or_may_not_have_happened():
    took = [op(0, "a", "put", 1, 0, float("inf")), op(1, "b", "get", 1, 5, 6)]
    lost = [op(0, "a", "put", 1, 0, float("inf")), op(1, "b", "get", None, 5, 6)]
    assert check_register(took).result == OK and check_register(lost).result == OK


def test_keys_are_checked_independently_and_the_bad_key_is_named():
    ops = [op(0, "a", "put", 1, 0, 1, key="x"), op(1, "b", "get", 1, 2, 3, key="x"),
           op(2, "a", "put", 5, 0, 1, key="y"), op(3, "b", "get", 4, 2, 3, key="y")]
    res = check_kv(ops)
    assert res["result"] == VIOLATION and [v["key"] for v in res["violations"]] == ["y"]


def _random_linearizable_history(rng: random.Random, n: int) -> list[KvOp]:
    """Ops on one register executed atomically at random points inside their intervals."""
    value, ops, t = None, [], 0.0
    points = sorted(rng.uniform(0, 100) for _ in range(n))
    for i, p in enumerate(points):
        if rng.random() < 0.5:
            value = i
            kind, v = "put", i
        else:
            kind, v = "get", value
        ops.append(op(i, f"p{i}", kind, v, p - rng.uniform(0, 5), p + rng.uniform(0, 5)))
        t = max(t, p)
    return ops


def test_random_linearizable_histories_are_accepted():
    rng = random.Random(7)
    for _ in range(50):
        assert check_register(_random_linearizable_history(rng, 30)).result == OK


def test_a_bounded_search_answers_unknown_instead_of_guessing():
    # many concurrent writes of distinct values and one impossible read: exponential search
    h = [op(i, f"w{i}", "put", i, 0, 100) for i in range(16)] + [op(99, "r", "get", -1, 50, 60)]
    res = check_register(h, max_steps=500)
    assert res.result == UNKNOWN and "budget" in res.detail


# ---------------------------------------------------------------- locks


def _lock(event, holder, token=None, time=0, **kw):
    d = {"type": "lock", "event": event, "lock": "L", "holder": holder, "time": time, **kw}
    if token is not None:
        d["token"] = token
    return d


def test_a_valid_lock_history_passes():
    h = [_lock("grant", "a", 5, time=1), _lock("request", "b", time=2),
         _lock("request", "c", time=2), _lock("release", "a", 5, time=3),
         _lock("grant", "b", 8, time=3), _lock("expire", "b", 8, time=20, deadline=10),
         _lock("grant", "c", 9, time=20)]
    res = check_locks(h)
    assert res["result"] == OK and res["grants"] == 3


def test_overlapping_holders_are_rejected():
    h = [_lock("grant", "a", 1), _lock("grant", "b", 2)]
    assert [v["kind"] for v in check_locks(h)["violations"]] == ["overlap"]


def test_a_decreasing_fencing_token_is_rejected():
    h = [_lock("grant", "a", 5), _lock("release", "a", 5), _lock("grant", "b", 4)]
    assert [v["kind"] for v in check_locks(h)["violations"]] == ["token-order"]


def test_a_waiter_jumping_the_queue_is_rejected():
    h = [_lock("grant", "a", 1), _lock("request", "b"), _lock("request", "c"),
         _lock("release", "a", 1), _lock("grant", "c", 2)]
    assert [v["kind"] for v in check_locks(h)["violations"]] == ["fifo"]


def test_expiry_before_the_agreed_deadline_is_rejected():
    h = [_lock("grant", "a", 1, time=0), _lock("expire", "a", 1, time=10, deadline=10)]
    assert [v["kind"] for v in check_locks(h)["violations"]] == ["early-expiry"]


def test_a_lease_expiring_late_is_rejected():
    h = [{"type": "lease", "event": "grant", "lease": 1, "deadline": 10, "time": 0,
          "tx_index": 0},
         {"type": "lease", "event": "grant", "lease": 2, "deadline": 99, "time": 15,
          "tx_index": 0}]
    assert [v["kind"] for v in check_locks(h)["violations"]] == ["late-expiry"]


def test_release_by_a_non_holder_is_rejected():
    h = [_lock("grant", "a", 1), _lock("release", "b", 1)]
    assert [v["kind"] for v in check_locks(h)["violations"]] == ["not-holder"]


# ---------------------------------------------------------------- input format and CLI


def test_bad_lines_are_reported_with_their_line_number():
    for lines, text in [(["{"], "line 1"), (["", '{"type": "kv"}'], "line 2: missing"),
                        (['{"type": "zzz"}'], "unknown type")]:
        try:
            check_lines(lines)
        except HistoryError as exc:
            assert text in str(exc)
        else:
            raise AssertionError(f"{lines} accepted")


def test_cli_reads_json_lines_and_exits_nonzero_on_a_violation(tmp_path):
    good = [
        {"type": "init", "key": "x", "value": "0"},
        {"type": "kv", "process": "a", "op": "put", "key": "x", "value": "1", "invoke": 0,
         "complete": 5},
        {"type": "kv", "process": "b", "op": "get", "key": "x", "value": "1", "invoke": 6,
         "complete": 7},
        {"type": "kv", "process": "c", "op": "get", "key": "x", "value": "0", "invoke": 1,
         "complete": None},
        {"type": "lock", "event": "grant", "lock": "L", "holder": "a", "token": 3, "time": 1},
    ]
    stale = good + [{"type": "kv", "process": "d", "op": "get", "key": "x", "value": "0",
                     "invoke": 8, "complete": 9}]
    results = []
    for name, lines in [("good", good), ("stale", stale)]:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("# recorded by a test\n" + "\n".join(json.dumps(x) for x in lines))
        proc = subprocess.run([sys.executable, "-m", "testnet.history", str(path)],
                              capture_output=True, text=True, timeout=60)
        results.append((proc.returncode, json.loads(proc.stdout)["result"]))
    assert results == [(0, OK), (1, VIOLATION)]
