"""Safety under arbitrary asynchrony: random delivery order, drops, duplicates and an
equivocating primary never make two replicas execute different blocks at one seq; once the
network heals, every request executes (liveness after GST)."""

import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import ClientRequest, PrePrepare, Receive, Tick, batch_digest
from testnet.checkers import find_equivocations

FAST = {"timeout_request_ms": 150, "timeout_view_change_ms": 150, "status_interval_ms": 40,
        "checkpoint_interval": 4, "watermark_window": 8, "batch_max": 2}


def _chaos(c, rng, steps, drop, dup):
    for _ in range(steps):
        if not c.queue or rng.random() < 0.05:
            c.now += rng.randint(1, 60)
            for i in c.up():
                c.step(i, Tick(c.now))
            continue
        idx = rng.randrange(len(c.queue))
        c.queue.rotate(-idx)
        sender, to, msg = c.queue.popleft()
        c.queue.rotate(idx)
        if rng.random() < drop or sender in c.down or to in c.down:
            continue
        msgs = [msg]
        if c.tamper is not None:
            changed = c.tamper(sender, to, msg)
            msgs = msgs if changed is None else changed
        for m in msgs:
            c.step(to, Receive(sender, m))
            if rng.random() < dup:
                c.step(to, Receive(sender, m))


def _equivocating_primary(c):
    """Replica 0 sends odd replicas a different (validly signed) batch for every seq."""
    a0 = c.auth(0)

    def tamper(sender, to, m):
        if sender == 0 and isinstance(m, PrePrepare) and to % 2 == 1:
            t = m.time_ms + 1
            return [a0.sign(msgspec.structs.replace(
                m, time_ms=t, digest=batch_digest(t, m.requests)))]
        return None

    return tamper


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    drop=st.sampled_from([0.0, 0.1, 0.3]),
    dup=st.sampled_from([0.0, 0.1]),
    fault=st.sampled_from(["none", "crash-primary", "equivocate"]),
)
def test_random_delivery_never_yields_two_different_blocks_at_one_seq(
    cluster_cls, seed, drop, dup, fault
):
    rng = random.Random(seed)
    c = cluster_cls(**FAST)
    if fault == "crash-primary":
        c.crash(0)
    elif fault == "equivocate":
        c.tamper = _equivocating_primary(c)
    reqs = [c.request(k % 2, k) for k in range(6)]
    for r in reqs:
        c.step(rng.choice(c.up()), ClientRequest(r))
    _chaos(c, rng, 1500, drop, dup)
    c.assert_agreement()
    # heal: reliable FIFO delivery from now on
    assert c.run_until(lambda: c.all_executed(reqs), timeout_ms=30_000), [
        c.replicas[i].health() for i in c.up()
    ]
    c.assert_agreement()
    honest = [m for m in c.sent if getattr(m, "replica", 0) != 0 or fault == "none"]
    assert find_equivocations(honest) == []


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7])
def test_soak_many_seeds_stay_safe_and_live(cluster_cls, n):
    """`pytest -m slow`: 150 seeds per size of drops, duplicates, reordering and one fault."""
    for seed in range(150):
        rng = random.Random(seed)
        drop, dup = rng.choice([0.0, 0.1, 0.3, 0.5]), rng.choice([0.0, 0.1])
        fault = rng.choice(["none", "crash-primary", "crash-backup", "equivocate"])
        c = cluster_cls(n=n, **FAST)
        if fault == "crash-primary":
            c.crash(0)
        elif fault == "crash-backup":
            c.crash(n - 1)
        elif fault == "equivocate":
            c.tamper = _equivocating_primary(c)
        reqs = [c.request(k % 2, k) for k in range(10)]
        for r in reqs:
            c.step(rng.choice(c.up()), ClientRequest(r))
        _chaos(c, rng, 2000, drop, dup)
        c.assert_agreement()
        done = c.run_until(lambda c=c, reqs=reqs: c.all_executed(reqs), timeout_ms=30_000)
        assert done, (seed, fault)
        c.assert_agreement()
