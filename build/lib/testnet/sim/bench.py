"""`python -m testnet bench-sim`: simulated consensus throughput, bounded by CPU.

Owns the benchmark: a fault-free simulated cluster (default n=4, batch 100) orders N signed
requests; the figure is requests executed per second of CPU time (`time.process_time`) spent
by the whole cluster in one process (all replicas' signing, verifying, encoding and stepping),
for the fast test signer and for real Ed25519. Imports: stdlib, testnet.sim.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cluster import SimOptions, run_sim


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--batch", type=int, default=100, help="batch_max")
    p.add_argument("--requests", type=int, default=5_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--crypto", choices=["fast", "ed25519", "both"], default="both")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")


def bench_one(nodes: int, batch: int, requests: int, clients: int, crypto: str,
              seed: int = 1) -> dict:
    opts = SimOptions(
        n=nodes, requests=requests, clients=clients, crypto=crypto, batch_max=batch,
        checkpoint_interval=16, watermark_window=64,
        submit_window_ms=max(10, requests // 200),  # ~200 requests/ms offered: full batches
        client_retry_ms=60_000, liveness_bound_ms=600_000, trace_len=16,
    )
    res = run_sim(opts, seed)
    fig = res.figures
    executed = fig["executed_everywhere"]
    cpu = fig["cpu_s"]
    return {
        "crypto": crypto,
        "nodes": nodes,
        "batch": batch,
        "requests": requests,
        "executed": executed,
        "safety": res.safety,
        "liveness": res.liveness,
        "cpu_s": cpu,
        "req_per_cpu_s": round(executed / cpu, 1) if cpu else None,
        "virtual_time_ms": fig["virtual_time_ms"],
        "virtual_tx_per_s": round(executed / (fig["virtual_time_ms"] / 1000), 1)
        if fig["virtual_time_ms"] else None,
        "blocks": max(res.committed.values()),
        "avg_batch": round(executed / max(1, max(res.committed.values())), 1),
        "messages": fig["messages"],
    }


def run(args: argparse.Namespace) -> int:
    cryptos = ["fast", "ed25519"] if args.crypto == "both" else [args.crypto]
    results = [bench_one(args.nodes, args.batch, args.requests, args.clients, c, args.seed)
               for c in cryptos]
    if args.json:
        print(json.dumps({"results": results}))
    else:
        for r in results:
            print(f"{r['crypto']:>8}: n={r['nodes']} batch={r['batch']} "
                  f"{r['executed']}/{r['requests']} requests in {r['cpu_s']} CPU s = "
                  f"{r['req_per_cpu_s']} req/CPU-s ({r['blocks']} blocks, "
                  f"{r['messages']} messages)")
    bad = [r for r in results if r["safety"] != "ok" or r["liveness"] != "ok"]
    if bad:
        print(f"bench-sim: run not clean: {bad}", file=sys.stderr)
    return 1 if bad else 0
