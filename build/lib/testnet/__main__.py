"""`python -m testnet <command>`: one argparse front end; each command lives in its own module
exposing `add_arguments(parser)` and `run(args) -> int` (or `add_<cmd>_arguments`/`run_<cmd>`).
Only the chosen command's module is imported, so light commands start fast."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("testnet.launcher", "start N local nodes (foreground live status, or --detach)"),
    "down": ("testnet.launcher", "stop every node of a testnet"),
    "status": ("testnet.launcher", "show the status of every node"),
    "kill": ("testnet.launcher", "stop one node (--hard: SIGKILL)"),
    "restart": ("testnet.launcher", "restart one node"),
    "logs": ("testnet.launcher", "print one node's log"),
    "partition": ("testnet.links", "cut links: --groups 0,1/2,3, --isolate I, --from I --to J"),
    "heal": ("testnet.links", "restore every link cut by partition"),
    "link": ("testnet.links", "put a link profile (lan, wan, lossy, geo, slow) on a --netns testnet"),
    "node": ("testnet.adversary.node", "run one testnet node with its home's strategies and link faults"),
    "sim": ("testnet.sim.cli", "run the deterministic simulator"),
    "attack": ("testnet.attack", "run an attack scenario on a real testnet"),
    "bench": ("testnet.bench", "benchmark a fresh testnet through the public RPC"),
    "read-flood": ("testnet.read_flood", "a read flood (kv_range + blockchain batches) on the primary"),
    "client-flood": ("testnet.client_flood", "10 client keys flood puts; a well-behaved client's put latency"),
    "bench-sim": ("testnet.sim.bench", "simulated consensus throughput (CPU-bound)"),
    "bench-catchup": ("testnet.bench_catchup", "wiped-node rejoin: block replay vs snapshot; pruned ledger sizes"),
    "bench-storage": ("testnet.bench_storage", "LevelDB block commit throughput; --mix: a node's write mix"),
    "bench-net": ("testnet.bench_net", "libp2p vs raw TCP frame throughput and latency"),
    "bench-locks": ("testnet.bench_locks", "lock acquire/release throughput and latency"),
    "history": ("testnet.history", "check a recorded KV/lock history (JSON lines)"),
    "nemesis": ("testnet.nemesis", "faults under concurrent clients on a --netns testnet, "
                "then linearizability, locks, lost writes, agreement"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m testnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            add = getattr(mod, f"add_{name.replace('-', '_')}_arguments", None)
            (add or mod.add_arguments)(p)
            p.set_defaults(_mod=mod)
    args = parser.parse_args(argv)
    mod = args._mod
    run = getattr(mod, f"run_{args.command.replace('-', '_')}", None) or mod.run
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
