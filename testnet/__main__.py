"""`python -m testnet <command>`: one argparse front end; each command lives in its own module
exposing `add_arguments(parser)` and `run(args) -> int`."""

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
    "sim": ("testnet.sim.cli", "run the deterministic simulator"),
    "attack": ("testnet.attack", "run an attack scenario on a real testnet"),
    "bench": ("testnet.bench", "benchmark a fresh testnet through the public RPC"),
    "bench-sim": ("testnet.sim.bench", "simulated consensus throughput (CPU-bound)"),
    "bench-storage": ("testnet.bench_storage", "LevelDB block commit throughput"),
    "bench-net": ("testnet.bench_net", "libp2p vs raw TCP frame throughput and latency"),
    "history": ("testnet.history", "check a recorded KV/lock history (JSON lines)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module.rsplit(".", 1)[0]):
                p.set_defaults(_missing=str(exc))
                continue
            raise
        add = getattr(mod, f"add_{name.replace('-', '_')}_arguments", None) or mod.add_arguments
        add(p)
    args = parser.parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"testnet {args.command}: not available ({args._missing})", file=sys.stderr)
        return 2
    mod = importlib.import_module(args._module)
    run = getattr(mod, f"run_{args.command.replace('-', '_')}", None) or mod.run
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
