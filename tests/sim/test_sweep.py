"""Random-seed sweeps: each seed is a random mix of at most f Byzantine replicas (any
strategy, sometimes colluding) and network faults (loss, duplication, reordering,
partitions, one-way links, crash/restart, Twins, clock skew), every 8th seed on real Ed25519.

The default suite runs 300 seeds (200 at n=4, 100 at n=7); the `slow` suite runs the rest of
seeds 1..SLOW_SEEDS at each n (400 at n=4, 500 at n=7: not the default ones again). The idle
sweeps run the same mixes with no client load and the checker "faults heal -> every correct
replica executes a new block within IDLE_BLOCK_MS" (testnet/sim/idle.py): the same seeds. The 1,000-seed
sweeps per n are the CLI's (`python -m testnet sim --seeds 1000 --random-faults --nodes 7
--jobs 2`, and `--requests 0 --idle-block-ms 5000` for idle), run by hand and reported in
docs/testing.md: the suites' 20 minutes do not hold them.
Failures print every failing seed with its replay command and trace.
"""

import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from testnet.sim import SimOptions, random_options, run_sim

IDLE_BLOCK_MS = 5_000  # no client load: a block within 5 s of virtual time after the heal


def _one(job: tuple[int, int, str, int]) -> str | None:
    n, seed, store, idle_ms = job
    requests = 0 if idle_ms else 20
    res = run_sim(random_options(SimOptions(n=n, requests=requests, store=store,
                                            idle_block_ms=idle_ms), seed), seed)
    if res.ok:
        return None
    idle = f"--requests 0 --idle-block-ms {idle_ms} " if idle_ms else ""
    return (f"replay: python -m testnet sim --nodes {n} --seed {seed} --random-faults "
            f"{idle}--store {store}\n" + res.failure_text()[:6000])


def _sweep(n: int, seeds: range, jobs: int = 1, store: str = "sim", idle_ms: int = 0) -> None:
    work = [(n, s, store, idle_ms) for s in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            failures = [f for f in pool.map(_one, work, chunksize=16) if f]
    else:
        failures = [f for f in map(_one, work) if f]
    assert not failures, f"{len(failures)} failing seeds (n={n}):\n" + "\n\n".join(failures[:3])


def _one_small_table(job: tuple[int, str]) -> tuple[str | None, int]:
    seed, store = job
    opts = random_options(SimOptions(n=4, requests=20, clients=6, max_clients=2, store=store),
                          seed)
    res = run_sim(opts, seed)
    loads = res.figures["client_loads"]
    if res.ok:
        return None, loads
    return (f"seed {seed} store {store} (max_clients=2, clients=6)\n"
            + res.failure_text()[:6000]), loads


def test_sweep_n4_with_a_client_table_of_two():
    """Six clients through a dedup table of two: evictions, loads from the store (the real
    ledger code for half the seeds) and capped restores after crashes, under every fault."""
    results = [_one_small_table((s, "memory" if s % 2 else "sim")) for s in range(2001, 2061)]
    failures = [f for f, _ in results if f]
    assert not failures, f"{len(failures)} failing seeds:\n" + "\n\n".join(failures[:3])
    assert sum(loads for _, loads in results) > 100  # the load path ran, a lot


DEFAULT_SEEDS = {4: 200, 7: 100}  # seeds 1..N per n in the default suite


def test_sweep_n4_default():
    _sweep(4, range(1, DEFAULT_SEEDS[4] + 1))


def test_sweep_n7_default():
    _sweep(7, range(1, DEFAULT_SEEDS[7] + 1))


def test_sweep_n4_on_the_real_memory_store():
    # storage.MemoryStore: LevelDB's ledger code; crashes drop unsynced writes, then recover()
    _sweep(4, range(1001, 1061), store="memory")


def test_sweep_idle_n4_default():
    _sweep(4, range(1, DEFAULT_SEEDS[4] + 1), idle_ms=IDLE_BLOCK_MS)


def test_sweep_idle_n7_default():
    _sweep(7, range(1, DEFAULT_SEEDS[7] + 1), idle_ms=IDLE_BLOCK_MS)


SLOW_SEEDS = 600  # the slow suite completes seeds 1..600 per n; 1..1000 are a CLI run


def _slow_seeds(n: int) -> range:
    return range(DEFAULT_SEEDS[n] + 1, SLOW_SEEDS + 1)


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7])
def test_sweep_slow_slice(n):
    _sweep(n, _slow_seeds(n), jobs=max(1, min(4, os.cpu_count() or 1)))


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7])
def test_sweep_idle_slow_slice(n):
    _sweep(n, _slow_seeds(n), jobs=max(1, min(4, os.cpu_count() or 1)),
           idle_ms=IDLE_BLOCK_MS)
