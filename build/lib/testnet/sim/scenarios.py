"""Seed-derived scenario mixes for sweeps: Byzantine strategies (at most f faulty) and faults.

Owns `random_options(base, seed)`: the same (base, seed) always gives the same options, so a
failing sweep seed replays with `--seed S --random-faults` and the same other arguments.
Also `f_plus_one_options`: f+1 colluding equivocators, where safety is EXPECTED to break.
Imports: stdlib, testnet.sim.
"""

from __future__ import annotations

import dataclasses
import random

from .cluster import SimOptions
from .network import Faults, OneWay, Partition

# strategies a random mix draws from (the contract's eight plus the extras)
POOL = (
    "silent", "equivocate", "forge", "replay", "slow", "fake-view-change", "bad-checkpoint",
    "flood", "wrong-digest", "future-view", "invalid-new-view", "silent-primary",
    "crash-after:{k}",
)


def random_options(base: SimOptions, seed: int, ed25519_share: int = 8) -> SimOptions:
    """A random mix of up to f faulty replicas and network faults, derived from `seed`.

    Every `ed25519_share`-th seed (and every seed with `forge`) runs with real Ed25519. Unless
    `base` sets them, forward_relay_ms (0 = forward to everyone at once, or PBFT's relay at
    500 ms) and max_in_flight (1 or 4) are drawn per seed from their own generators, so the
    rest of each seed's mix is what it always was."""
    rng = random.Random(f"{seed}/mix")
    n = base.n
    f = (n - 1) // 3
    k = rng.randint(0, f)
    ids = rng.sample(range(n), k)
    byz: dict[int, list[str]] = {}
    for rid in ids:
        picks = [rng.choice(POOL)]
        if rng.random() < 0.25:
            picks.append(rng.choice(POOL))
        byz[rid] = [p.format(k=rng.randint(0, 200)) for p in picks]
    collude = k >= 2 and rng.random() < 0.5
    if k >= 1 and rng.random() < 0.15:  # colluders lying consistently in view changes
        for rid in ids:
            byz[rid] = ["silent-primary", "fake-view-change"]
        collude = k >= 2
    faulty = set(ids)
    heal = rng.randint(2_000, 8_000)
    faults = Faults(
        loss=rng.choice([0.0, 0.0, 0.01, 0.05, 0.1]),
        dup=rng.choice([0.0, 0.0, 0.02, 0.1]),
        reorder=rng.choice([0.0, 0.1, 0.3]),
        delay_min_ms=1,
        delay_max_ms=rng.choice([5, 20, 50]),
        heal_ms=heal,
    )
    if rng.random() < 0.2:
        members = list(range(n))
        rng.shuffle(members)
        cut = rng.randint(1, n - 1)
        start = rng.randint(0, 2_000)
        faults.partitions.append(Partition(
            groups=(frozenset(members[:cut]), frozenset(members[cut:])),
            start_ms=start, heal_ms=start + rng.randint(500, 5_000)))
    twins: list[int] = []
    if len(faulty) < f and rng.random() < 0.15:
        rid = rng.choice([j for j in range(n) if j not in faulty])
        kind = rng.choice(["deaf", "mute", "twins"])
        if kind == "twins":
            twins.append(rid)
        else:
            faults.one_way.append(OneWay(rid, kind))
        faulty.add(rid)
    crashes: list[tuple[int, int, int | None]] = []
    if rng.random() < 0.3:
        rid = rng.choice(range(n))
        at = rng.randint(0, 3_000)
        crashes.append((rid, at, at + rng.randint(300, 4_000)))
    if rng.random() < 0.08:  # the whole cluster goes down and comes back from its disks
        at = rng.randint(200, 3_000)
        back = at + rng.randint(100, 3_000)
        crashes.extend((rid, at, back) for rid in range(n))
    torn = bool(crashes) and rng.random() < 0.5
    crypto = base.crypto
    if ed25519_share and seed % ed25519_share == 0:
        crypto = "ed25519"
    return dataclasses.replace(
        base,
        byzantine=byz,
        collude=collude,
        twins=twins,
        faults=faults,
        crashes=crashes,
        torn_crashes=torn,
        crypto=crypto,
        clock_skew_ms=rng.choice([0, 0, 20, 300]),
        forward_relay_ms=(random.Random(f"{seed}/relay").choice([0, 500])
                          if base.forward_relay_ms is None else base.forward_relay_ms),
        max_in_flight=(random.Random(f"{seed}/pipeline").choice([1, 4])
                       if base.max_in_flight is None else base.max_in_flight),
    )


def f_plus_one_options(base: SimOptions) -> SimOptions:
    """f+1 colluding equivocators starting with the view-0 primary: beyond the fault model,
    so the checkers must report a safety violation."""
    f = (base.n - 1) // 3
    return dataclasses.replace(
        base, byzantine={rid: ["equivocate"] for rid in range(f + 1)}, collude=True
    )
