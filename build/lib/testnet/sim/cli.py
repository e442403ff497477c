"""`python -m testnet sim`: run the deterministic simulator for one seed or a sweep of seeds.

Owns argument parsing, the sweep loop (optionally over worker processes) and the output: one
JSON object with `--json`, a short human summary otherwise. Exit status is non-zero when any
run violates safety (an honest replica raising is a violation too), stalls, or lets an honest
replica hold more than `--memory-bound-mb` MiB (or, with `--expect violated`, when none
violates safety).
Imports: stdlib, testnet.adversary (parsing), testnet.sim.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from testnet.adversary import STRATEGIES, parse_byzantine

from .cluster import PLANTED_BUGS, SimOptions
from .cluster import run_sim as simulate  # not `run_sim`: the dispatcher looks that name up
from .network import Faults, OneWay, Partition
from .scenarios import f_plus_one_options, random_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=4, help="replicas (3f+1)")
    p.add_argument("--byzantine", action="append", default=[], metavar="I:STRATEGY[,I:S…]",
                   help=f"byzantine replica strategies; known: {', '.join(STRATEGIES)}")
    p.add_argument("--collude", action="store_true",
                   help="byzantine replicas share keys and lie consistently")
    p.add_argument("--f-plus-one", action="store_true",
                   help="f+1 colluding equivocators (beyond the model: expect 'violated')")
    p.add_argument("--twins", type=int, action="append", default=[], metavar="I",
                   help="run replica I twice with one key (Twins)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1, help="run seeds S, S+1, … S+K-1")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--loss", type=float, default=0.0, help="message loss probability")
    p.add_argument("--dup", type=float, default=0.0, help="duplication probability")
    p.add_argument("--reorder", type=float, default=0.0, help="chance of an extra delay")
    p.add_argument("--delay-min", type=int, default=1, help="ms")
    p.add_argument("--delay-max", type=int, default=20, help="ms")
    p.add_argument("--partition", action="store_true",
                   help="split the replicas in two random groups from 0 until --heal-ms")
    p.add_argument("--isolate", action="append", default=[], metavar="I:FROM_MS:TO_MS",
                   help="cut replica I off from every other replica from FROM_MS to TO_MS")
    p.add_argument("--idle-block-ms", type=int, default=0, metavar="T",
                   help="checker: once faults heal, every correct replica executes a new "
                        "block within T ms (no client load needed; 0 = off)")
    p.add_argument("--deaf", type=int, action="append", default=[], metavar="I",
                   help="replica I can send but never receive (counts as faulty)")
    p.add_argument("--mute", type=int, action="append", default=[], metavar="I",
                   help="replica I can receive but never send (counts as faulty)")
    p.add_argument("--crash", action="append", default=[], metavar="I:AT_MS[:RESTART_MS]",
                   help="crash replica I at AT_MS, restart from its records at RESTART_MS")
    p.add_argument("--torn", action="store_true",
                   help="crashes hit mid-output: records durable, nothing sent or executed")
    p.add_argument("--heal-ms", type=int, default=None,
                   help="faults stop at this virtual time (default 5000 when faults are set)")
    p.add_argument("--random-faults", action="store_true",
                   help="per seed: random mix of up to f byzantine strategies and faults")
    p.add_argument("--crypto", choices=["fast", "ed25519"], default="fast")
    p.add_argument("--authenticated-state", action="store_true",
                   help="stores keep the state tree and replicas certify each block's roots "
                   "with StateVotes (checker: honest roots agree at every height)")
    p.add_argument("--store", choices=["sim", "memory"], default="sim",
                   help="each replica's disk is a storage.MemoryStore; sim: a crash keeps "
                   "every write, memory: a crash drops unsynced writes")
    p.add_argument("--planted-bug", choices=PLANTED_BUGS, default=None,
                   help="plant a bug so the checkers have something to catch")
    p.add_argument("--expect", choices=["ok", "violated"], default="ok",
                   help="'violated': succeed only if every seed violates safety")
    p.add_argument("--batch", type=int, default=8, help="batch_max")
    p.add_argument("--checkpoint-interval", type=int, default=4)
    p.add_argument("--relay-ms", type=int, default=None, metavar="MS",
                   help="Config.forward_relay_ms: 0 = forward client requests to everyone at "
                        "once, >0 = PBFT's relay (default: the Config default; with "
                        "--random-faults drawn per seed, 0 or 500)")
    p.add_argument("--max-in-flight", type=int, default=None, metavar="K",
                   help="Config.max_in_flight: partial batches in flight at once (default: the "
                        "Config default; with --random-faults drawn per seed, 1 or 4)")
    p.add_argument("--clock-skew", type=int, default=0, help="max per-replica clock offset ms")
    p.add_argument("--liveness-bound-ms", type=int, default=120_000,
                   help="virtual time after healing within which all requests must execute")
    p.add_argument("--memory-bound-mb", type=float, default=32.0, metavar="MIB",
                   help="checker: most MiB any honest replica may hold (sampled)")
    p.add_argument("--memory-sample-ms", type=int, default=1_000, metavar="MS",
                   help="virtual ms between an honest replica's memory samples (0 = off)")
    p.add_argument("--trace", type=int, default=200, help="events kept for a failure trace")
    p.add_argument("--no-wire", action="store_true", help="skip encode/decode of messages")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for --seeds")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def options_from_args(args: argparse.Namespace) -> SimOptions:
    n = args.nodes
    byz = parse_byzantine(args.byzantine, n)
    heal = args.heal_ms
    faulty_net = args.loss or args.dup or args.reorder or args.partition
    if heal is None:
        heal = 5_000 if faulty_net else 0
    faults = Faults(loss=args.loss, dup=args.dup, reorder=args.reorder,
                    delay_min_ms=args.delay_min, delay_max_ms=args.delay_max, heal_ms=heal)
    if args.partition:
        cut = max(1, n // 2)
        faults.partitions.append(Partition(
            groups=(frozenset(range(cut)), frozenset(range(cut, n))), start_ms=0,
            heal_ms=heal))
    for spec in args.isolate:
        parts = spec.split(":")
        if len(parts) != 3 or not all(x.isdigit() for x in parts) or int(parts[0]) >= n:
            raise ValueError(f"bad --isolate {spec!r}: expected I:FROM_MS:TO_MS")
        rid, start, end = (int(x) for x in parts)
        faults.partitions.append(Partition(
            groups=(frozenset({rid}), frozenset(set(range(n)) - {rid})), start_ms=start,
            heal_ms=end))
    for rid in args.deaf:
        faults.one_way.append(OneWay(rid, "deaf"))
    for rid in args.mute:
        faults.one_way.append(OneWay(rid, "mute"))
    crashes = []
    for spec in args.crash:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(x.isdigit() for x in parts):
            raise ValueError(f"bad --crash {spec!r}: expected I:AT_MS[:RESTART_MS]")
        crashes.append((int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) == 3 else None))
    opts = SimOptions(
        n=n, requests=args.requests, clients=args.clients, crypto=args.crypto, byzantine=byz,
        collude=args.collude, twins=list(args.twins), faults=faults, crashes=crashes,
        torn_crashes=args.torn, store=args.store,
        batch_max=args.batch, checkpoint_interval=args.checkpoint_interval,
        watermark_window=4 * args.checkpoint_interval, clock_skew_ms=args.clock_skew,
        liveness_bound_ms=args.liveness_bound_ms, trace_len=args.trace,
        wire=not args.no_wire, planted_bug=args.planted_bug,
        forward_relay_ms=args.relay_ms, max_in_flight=args.max_in_flight,
        memory_bound_mb=args.memory_bound_mb, memory_sample_ms=args.memory_sample_ms,
        idle_block_ms=args.idle_block_ms,
        authenticated_state=args.authenticated_state,
    )
    if args.f_plus_one:
        opts = f_plus_one_options(opts)
    return opts


def options_for_seed(base: SimOptions, seed: int, randomize: bool) -> SimOptions:
    if not randomize:
        return dataclasses.replace(base, faults=dataclasses.replace(base.faults))
    return random_options(base, seed)


def _run_one(job: tuple[SimOptions, int, bool]) -> dict[str, Any]:
    base, seed, randomize = job
    res = simulate(options_for_seed(base, seed, randomize), seed)
    d = res.as_dict()
    if not res.checks_ok:
        d["failure_text"] = res.failure_text()
    return d


def replay_command(args: argparse.Namespace, seed: int) -> str:
    """The command line that replays one seed of this invocation."""
    parts = ["python", "-m", "testnet", "sim", "--nodes", str(args.nodes), "--seed", str(seed),
             "--requests", str(args.requests)]
    for b in args.byzantine:
        parts += ["--byzantine", b]
    flags = {"collude": "--collude", "f_plus_one": "--f-plus-one", "partition": "--partition",
             "random_faults": "--random-faults", "no_wire": "--no-wire", "torn": "--torn",
             "authenticated_state": "--authenticated-state"}
    parts += [flag for attr, flag in flags.items() if getattr(args, attr)]
    for attr, flag in (("loss", "--loss"), ("dup", "--dup"), ("reorder", "--reorder")):
        if getattr(args, attr):
            parts += [flag, str(getattr(args, attr))]
    for attr, flag in (("twins", "--twins"), ("deaf", "--deaf"), ("mute", "--mute"),
                       ("crash", "--crash"), ("isolate", "--isolate")):
        for v in getattr(args, attr):
            parts += [flag, str(v)]
    if args.heal_ms is not None:
        parts += ["--heal-ms", str(args.heal_ms)]
    if args.store != "sim":
        parts += ["--store", args.store]
    if args.crypto != "fast":
        parts += ["--crypto", args.crypto]
    if args.planted_bug:
        parts += ["--planted-bug", args.planted_bug]
    if args.clients != 4:
        parts += ["--clients", str(args.clients)]
    if args.batch != 8:
        parts += ["--batch", str(args.batch)]
    if args.checkpoint_interval != 4:
        parts += ["--checkpoint-interval", str(args.checkpoint_interval)]
    if args.clock_skew:
        parts += ["--clock-skew", str(args.clock_skew)]
    if args.relay_ms is not None:
        parts += ["--relay-ms", str(args.relay_ms)]
    if args.max_in_flight is not None:
        parts += ["--max-in-flight", str(args.max_in_flight)]
    if args.idle_block_ms:
        parts += ["--idle-block-ms", str(args.idle_block_ms)]
    if args.memory_bound_mb != 32.0:
        parts += ["--memory-bound-mb", str(args.memory_bound_mb)]
    if args.memory_sample_ms != 1_000:
        parts += ["--memory-sample-ms", str(args.memory_sample_ms)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    try:
        base = options_from_args(args)
    except ValueError as exc:
        print(f"testnet sim: {exc}", file=sys.stderr)
        return 2
    seeds = list(range(args.seed, args.seed + max(1, args.seeds)))
    jobs = [(base, s, args.random_faults) for s in seeds]
    wall0 = time.perf_counter()
    if args.jobs > 1 and len(seeds) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(_run_one, jobs, chunksize=8))
    else:
        results = [_run_one(j) for j in jobs]
    wall = time.perf_counter() - wall0
    violated = [r["seed"] for r in results if r["safety"] == "violated"]
    stalled = [r["seed"] for r in results if r["liveness"] == "stalled"]
    raised = [r["seed"] for r in results if r.get("honest_raised") == "raised"]
    bloated = [r["seed"] for r in results if r.get("honest_memory") == "exceeded"]
    if args.expect == "violated":
        code = 0 if len(violated) == len(results) else 1
    else:
        code = 0 if not violated and not stalled and not bloated else 1
    if len(results) == 1:
        out = results[0]
        failure = out.pop("failure_text", None)
        out["wall_s"] = round(wall, 3)
        if failure and code:
            out["replay"] = replay_command(args, out["seed"])
        if args.json:
            print(json.dumps(out, default=str))
        else:
            print(f"seed {out['seed']}: safety={out['safety']} liveness={out['liveness']} "
                  f"honest_raised={out['honest_raised']} honest_memory={out['honest_memory']} "
                  f"committed={out['committed']} virtual={out['virtual_time_ms']}ms "
                  f"view_changes={out['view_changes']} messages={out['messages']} "
                  f"cpu={out['cpu_s']}s")
            if failure:
                print(failure)
            if failure and code:
                print("replay: " + out["replay"])
        return code
    cpu = sum(r["cpu_s"] for r in results)
    summary = {
        "seeds": len(results),
        "first_seed": seeds[0],
        "safety": "violated" if violated else "ok",
        "liveness": "stalled" if stalled else "ok",
        "ok": sum(1 for r in results if r["safety"] == "ok" and r["liveness"] == "ok"
                  and r.get("honest_memory") != "exceeded"),
        "violated_seeds": violated,
        "stalled_seeds": stalled,
        "honest_raised": "raised" if raised else "ok",
        "honest_raised_seeds": raised,
        "honest_memory": "exceeded" if bloated else "ok",
        "memory_exceeded_seeds": bloated,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "seeds_per_s": round(len(results) / wall, 2) if wall else None,
        "max_view_changes": max(r["view_changes"] for r in results),
        "messages": sum(r["messages"] for r in results),
        "ed25519_seeds": sum(1 for r in results if r["options"]["crypto"] == "ed25519"),
        "replay": {str(s): replay_command(args, s)
                   for s in list(dict.fromkeys(violated + stalled + bloated))[:20]},
    }
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"{summary['seeds']} seeds: {summary['ok']} ok, {len(violated)} violated, "
              f"{len(stalled)} stalled, {len(raised)} with an honest replica raising, "
              f"{len(bloated)} over the memory bound in {summary['wall_s']} s "
              f"({summary['seeds_per_s']} seeds/s)")
        for r in results:
            if "failure_text" in r and code:
                print(r["failure_text"][:4000])
                print("replay: " + replay_command(args, r["seed"]))
    return code


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m testnet.sim.cli`) without loading every testnet command."""
    parser = argparse.ArgumentParser(prog="python -m testnet sim", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
