"""The CAS-register checker of the nemesis run: linearizable histories pass, a stale read, a
lost write or a wrong CAS outcome fail, open writes are pruned only when exact, and a long
history stays fast."""

from __future__ import annotations

import random
import time

from testnet.history_cas import check_cas, check_set


def op(f, key, inv, comp, typ="ok", proc="p", **kw):
    return {"f": f, "key": key, "invoke": inv, "complete": comp, "type": typ, "process": proc,
            **kw}


def test_a_linearizable_cas_history_passes():
    h = [op("write", "x", 0, 10, value="a", proc="p1"),
         op("cas", "x", 11, 20, expected="a", value="b", proc="p2"),
         op("cas", "x", 12, 22, typ="fail", expected="a", observed="b", proc="p1"),
         op("read", "x", 25, 30, value="b", proc="p3")]
    r = check_cas(h, {"x": "init"})
    assert r["result"] == "ok", r


def test_concurrent_ops_may_take_either_order():
    h = [op("write", "x", 0, 100, value="a", proc="p1"),
         op("read", "x", 10, 20, value="init", proc="p2"),
         op("read", "x", 30, 40, value="a", proc="p3")]
    assert check_cas(h, {"x": "init"})["result"] == "ok"


def test_a_stale_read_fails():
    h = [op("write", "x", 0, 10, value="a"),
         op("write", "x", 20, 30, value="b"),
         op("read", "x", 40, 50, value="a", proc="q")]
    r = check_cas(h, {"x": "init"})
    assert r["result"] == "violation"
    assert r["violations"][0]["key"] == "x"


def test_a_lost_write_fails_the_final_read():
    h = [op("write", "x", 0, 10, value="a"),
         op("read", "x", 20, 30, value="init", proc="q")]
    assert check_cas(h, {"x": "init"})["result"] == "violation"


def test_a_cas_that_succeeded_against_the_wrong_value_fails():
    h = [op("write", "x", 0, 10, value="a"),
         op("cas", "x", 20, 30, expected="init", value="b", proc="q")]
    assert check_cas(h, {"x": "init"})["result"] == "violation"


def test_a_failed_cas_that_read_the_expected_value_fails():
    h = [op("cas", "x", 0, 10, typ="fail", expected="init", observed="init")]
    assert check_cas(h, {"x": "init"})["result"] == "violation"


def test_an_open_write_may_have_happened_or_not():
    seen = [op("write", "x", 0, None, typ="info", value="a"),
            op("read", "x", 50, 60, value="a", proc="q")]
    unseen = [op("write", "x", 0, None, typ="info", value="a"),
              op("read", "x", 50, 60, value="init", proc="q")]
    assert check_cas(seen, {"x": "init"})["result"] == "ok"
    r = check_cas(unseen, {"x": "init"})
    assert r["result"] == "ok" and r["pruned_open_writes"] == 1


def test_an_open_cas_counts_only_if_its_compare_held():
    h = [op("write", "x", 0, 10, value="a"),
         op("cas", "x", 20, None, typ="info", expected="zzz", value="b"),
         op("read", "x", 50, 60, value="b", proc="q")]
    assert check_cas(h, {"x": "init"})["result"] == "violation"


def test_repeated_values_turn_pruning_off():
    h = [op("write", "x", 0, None, typ="info", value="a"),
         op("write", "x", 5, None, typ="info", value="a"),
         op("read", "x", 50, 60, value="init", proc="q")]
    r = check_cas(h, {"x": "init"})
    assert r["result"] == "ok" and not r["unique_values"] and r["pruned_open_writes"] == 0


def test_set_lost_and_phantom_adds():
    adds = [{"key": "s/1", "type": "ok"}, {"key": "s/2", "type": "info"},
            {"key": "s/3", "type": "ok"}]
    assert check_set(adds, ["s/1", "s/3"])["result"] == "ok"
    lost = check_set(adds, ["s/1", "s/2"])
    assert lost["result"] == "violation" and lost["lost_keys"] == ["s/3"]
    assert check_set(adds, ["s/1", "s/3", "s/9"])["phantom"] == ["s/9"]


def _simulated(n_ops: int, keys: int, seed: int) -> tuple[list[dict], dict]:
    """A real CAS register run by 8 concurrent processes, some ops left open."""
    rng = random.Random(seed)
    state = {f"k{i}": "init" for i in range(keys)}
    hist, t, n = [], 0.0, 0
    for _ in range(n_ops):
        n += 1
        k = rng.choice(list(state))
        inv = t
        t += rng.uniform(0.1, 2.0)
        lin = t  # the op takes effect here; intervals of ~8 processes overlap around it
        done = lin + rng.uniform(0.1, 8.0)
        proc = f"p{n % 8}"
        r = rng.random()
        open_ = rng.random() < 0.05
        if r < 0.35:
            state[k] = v = f"v{n}"
            hist.append(op("write", k, inv, None if open_ else done,
                           "info" if open_ else "ok", proc, value=v))
        elif r < 0.7:
            hist.append(op("read", k, inv, done, value=state[k], proc=proc))
        else:
            e = state[k] if rng.random() < 0.6 else "nope"
            new = f"v{n}"
            if state[k] == e:
                state[k] = new
                hist.append(op("cas", k, inv, None if open_ else done,
                               "info" if open_ else "ok", proc, expected=e, value=new))
            else:
                hist.append(op("cas", k, inv, done, "fail", proc, expected=e,
                               observed=state[k]))
    return hist, {f"k{i}": "init" for i in range(keys)}


def test_a_long_history_checks_fast():
    hist, init = _simulated(20_000, 8, seed=7)
    t0 = time.perf_counter()
    r = check_cas(hist, init)
    took = time.perf_counter() - t0
    assert r["result"] == "ok", r
    assert r["ops"] > 18_000
    assert took < 10.0, f"{took:.1f}s for {r['ops']} ops"
