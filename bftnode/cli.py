# PYTHON_ARGCOMPLETE_OK
"""The `bftnode` console script (argparse): keygen, init, testnet-files, start, status, and
`client …`.

Owns the command-line surface of a node. `client` subcommands live in `bftnode.client_cli`
(another module, imported lazily). Exit codes: 0 ok, 1 runtime failure, 2 bad input or a
start-up problem (bad config, wrong genesis, port in use, locked DB), always with a message.
Imports: stdlib, trio, httpx (status), bftnode.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import installed_version

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _err(cmd: str, msg: str) -> None:
    print(f"bftnode {cmd}: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- keygen


def _add_keygen(sub: Any) -> None:
    p = sub.add_parser("keygen", help="create an Ed25519 key file (mode 0600)")
    p.add_argument("--out", required=True, help="key file to create")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    from .keys import KeyFileError, generate_key_file

    try:
        key = generate_key_file(args.out, overwrite=args.force)
    except KeyFileError as exc:
        _err("keygen", str(exc))
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"path": str(args.out), "public_key": key.public_key.hex()}))
    else:
        print(f"wrote {args.out}\npublic key: {key.public_key.hex()}")
    return EXIT_OK


# ---------------------------------------------------------------- init


def _add_testnet_files(sub: Any) -> None:
    p = sub.add_parser(
        "testnet-files", help="homes for validators on separate hosts (genesis + one per host)",
        description="Write OUT/genesis.json and OUT/node<i> for validator i on host i (IP "
        "addresses or DNS names, in index order): every node listens on its host's address "
        "(every IPv4 address for a name; peers resolve names at each dial) with the same "
        "ports. Copy OUT/node<i> to host i and run `bftnode start --home DIR` there "
        "(docs/operations.md, 'Validators on separate hosts').")
    p.add_argument("--hosts", required=True,
                   help="comma-separated IP addresses or DNS names, one per validator (at least 4)")
    p.add_argument("--out", required=True, type=Path, help="directory to write")
    p.add_argument("--p2p-port", type=int, default=26656)
    p.add_argument("--rpc-port", type=int, default=26657)
    p.add_argument("--rpc-public", action="store_true",
                   help="serve the RPC on the host's address (default 127.0.0.1); give each "
                        "node rpc_tls_cert/rpc_tls_key, or --insecure-rpc")
    p.add_argument("--insecure-rpc", action="store_true",
                   help="allow plain HTTP on a non-loopback RPC address (insecure_rpc = true)")
    p.add_argument("--chain-id", help="chain id (default: bftnode-<random>)")
    p.add_argument("--open", action="store_true",
                   help="no permission checks (else OUT/admin.key is the chain's admin)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_testnet_files)


def run_testnet_files(args: argparse.Namespace) -> int:
    from .deploy import write_host_homes
    from .home import HomeError

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    try:
        m = write_host_homes(args.out, hosts, p2p_port=args.p2p_port, rpc_port=args.rpc_port,
                             rpc_public=args.rpc_public, insecure_rpc=args.insecure_rpc,
                             chain_id=args.chain_id, open_chain=args.open)
    except (HomeError, ValueError, OSError) as exc:
        _err("testnet-files", str(exc))
        return EXIT_USAGE
    if args.json:
        print(json.dumps(m))
        return EXIT_OK
    print(f"chain {m['chain_id']}: {m['genesis']}")
    for n in m["nodes"]:
        print(f"  validator {n['index']}: {n['home']} -> host {n['host']} (p2p {n['p2p']}, "
              f"rpc {n['rpc']})")
    if m["admin_key"]:
        print(f"admin key: {m['admin_key']} (permission checks on; keep it off the hosts)")
    return EXIT_OK


def _add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create a node home (config + key + genesis)",
        description="With --genesis: a home for validator --index of that chain (the key must "
        "match the genesis, or is created if --key is absent and the genesis lists it later). "
        "Without --genesis: a new local chain of --validators homes DIR/node0..N-1 "
        "(PBFT needs n = 3f+1 >= 4 validators, so there is no 1-validator chain).",
    )
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--genesis", type=Path, help="join this chain (genesis.json)")
    p.add_argument("--index", type=int, default=0, help="validator index in the genesis")
    p.add_argument("--key", type=Path, help="existing validator key file to use")
    p.add_argument("--validators", type=int, default=4, help="new local chain: validators")
    p.add_argument("--chain-id", help="new local chain: chain id")
    p.add_argument("--base-port", type=int, default=26600,
                   help="new local chain: p2p = base+2i, rpc = base+2i+1")
    p.add_argument("--p2p-port", type=int, help="join: p2p port (default: from genesis)")
    p.add_argument("--rpc-port", type=int, default=26657, help="join: rpc port")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .genesis import GenesisError, load_genesis
    from .home import HomeError, create_local_chain, init_home
    from .keys import KeyFileError, load_key_file

    try:
        if args.genesis is not None:
            genesis = load_genesis(args.genesis)
            if not 0 <= args.index < len(genesis.validators):
                _err("init", f"--index {args.index}: genesis has {len(genesis.validators)} "
                     "validators")
                return EXIT_USAGE
            key = load_key_file(args.key) if args.key else None
            want = genesis.validators[args.index].public_key
            if key is not None and key.public_key.hex() != want.lower():
                _err("init", f"key {args.key} is not validator {args.index} of {args.genesis}")
                return EXIT_USAGE
            cfg = init_home(args.home, genesis=genesis, node_index=args.index, key=key,
                            p2p_port=args.p2p_port, rpc_port=args.rpc_port)
            homes = [cfg]
            made = load_key_file(cfg.key_path)
            if made.public_key.hex() != want.lower():
                print(f"note: {cfg.key_path} (public key {made.public_key.hex()}) is not yet "
                      f"validator {args.index} of this genesis; the node will refuse to start "
                      "until the genesis lists this key", file=sys.stderr)
        else:
            homes = create_local_chain(args.home, args.validators, base_port=args.base_port,
                                       chain_id=args.chain_id)
    except (ConfigError, GenesisError, HomeError, KeyFileError, ValueError) as exc:
        _err("init", str(exc))
        return EXIT_USAGE
    info = [{"home": str(c.home), "index": c.node_index, "chain_id": c.chain_id,
             "p2p": c.p2p_listen, "rpc": f"http://{c.rpc_host}:{c.rpc_port}"} for c in homes]
    if args.json:
        print(json.dumps({"nodes": info}))
    else:
        for i in info:
            print(f"initialised {i['home']} (validator {i['index']} of {i['chain_id']}, "
                  f"p2p {i['p2p']}, rpc {i['rpc']})")
    return EXIT_OK


# ---------------------------------------------------------------- start


def _add_start(sub: Any) -> None:
    p = sub.add_parser("start", help="run a validator until SIGINT/SIGTERM")
    home = os.environ.get("BFTNODE_HOME")
    p.add_argument("--home", type=Path, required=not home, default=home,
                   help="the node's home (default $BFTNODE_HOME)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument("--insecure-rpc", action="store_true",
                   help="serve the RPC in plain HTTP even on a non-loopback rpc_host (as "
                        "insecure_rpc = true in the config; prefer rpc_tls_cert/rpc_tls_key)")
    p.set_defaults(func=run_start)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def run_start(args: argparse.Namespace,
              node_factory: Callable[[Any], Any] | None = None) -> int:
    """Run the node of `args.home` until SIGINT/SIGTERM. `node_factory(config) -> Node`
    (default `build_node`) lets a wrapper such as `python -m testnet node` build it."""
    import trio

    from .config import ConfigError, load_config
    from .logging import configure_logging, get_logger
    from .node.errors import StartupError

    try:
        cfg = load_config(args.home)
    except ConfigError as exc:
        _err("start", str(exc))
        return EXIT_USAGE
    if getattr(args, "insecure_rpc", False):  # `python -m testnet node` has no such flag
        import dataclasses

        cfg = dataclasses.replace(cfg, insecure_rpc=True)
    configure_logging(args.log_level or cfg.log_level, node_id=f"node{cfg.node_index}",
                      fmt=cfg.log_format)
    log = get_logger(node=cfg.node_index)
    try:
        prof_path = os.environ.get("BFTNODE_PROFILE")
        if prof_path:
            import cProfile
            prof = cProfile.Profile()
            try:
                prof.runcall(trio.run, _start_main, cfg, node_factory)
            finally:
                prof.dump_stats(f"{prof_path}.node{cfg.node_index}.prof")
        else:
            trio.run(_start_main, cfg, node_factory)
    except BaseException as exc:  # report every failure clearly, never a bare traceback
        leaves = _leaves(exc)
        startup = [e for e in leaves if isinstance(e, StartupError | OSError)]
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_OK
        if startup:
            msg = str(startup[0]) or repr(startup[0])
            _err("start", msg)
            log.error("start-up failed", reason=msg)
            return EXIT_USAGE
        log.exception("node failed", reason=repr(leaves[0]))
        _err("start", f"node failed: {leaves[0]!r}")
        return EXIT_FAIL
    return EXIT_OK


def _tune_gc() -> None:
    """Move start-up objects (modules, keys, config) out of the collector's view and collect
    the young generation less often: a loaded node allocates many short-lived messages and the
    default threshold (700) ran gen-0 collections hundreds of times a second."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _start_main(cfg: Any, node_factory: Callable[[Any], Any] | None = None) -> None:
    import trio

    from .logging import get_logger
    from .memory import hold_free_memory, limit_arenas
    from .node.build import build_node

    log = get_logger(node=cfg.node_index)
    limit_arenas(2)  # before the worker threads exist (see bftnode/memory.py)
    hold_free_memory()  # RSS at the working set's high-water mark, not a sawtooth
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        node = (node_factory or build_node)(cfg)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            _tune_gc()
            log.info("ready", rpc=node.rpc_url, p2p=cfg.p2p_listen, height=node.height())
            async for signum in signals:
                if signum == signal.SIGUSR1:  # operator aid: where does the memory go?
                    from .memory import write_report

                    try:
                        path = write_report(cfg.home, node)
                    except Exception as exc:  # a diagnostic must never stop the node
                        log.warning("memory report failed", reason=repr(exc)[:200])
                    else:
                        log.info("memory report written", path=str(path))
                    continue
                log.info("shutting down", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()  # the current write finishes; the DB is closed
                break


# ---------------------------------------------------------------- status


def _add_status(sub: Any) -> None:
    p = sub.add_parser("status", help="query a node's status over JSON-RPC")
    p.add_argument("--rpc", help="node JSON-RPC URL (default: the first of $BFTNODE_RPC, "
                                 "else http://127.0.0.1:26657)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--ca-file", metavar="FILE",
                   help="PEM file of the CA(s) an https:// node is checked against")
    p.set_defaults(func=run_status)


def rpc_call(url: str, method: str, params: dict | None = None, timeout: float = 5.0,
             ca_file: str | None = None) -> Any:
    """One JSON-RPC 2.0 call; raises RuntimeError with a clear message."""
    import httpx

    from .client.tls import http_verify

    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    try:
        verify = http_verify(ca_file)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    try:
        r = httpx.post(url, json=body, timeout=timeout, verify=verify)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach {url}: {exc}") from exc
    try:
        data = r.json()
    except ValueError:
        raise RuntimeError(f"{url} answered HTTP {r.status_code} without JSON") from None
    if "error" in data:
        e = data["error"]
        raise RuntimeError(f"{method} failed: {e.get('message')} (code {e.get('code')})")
    return data.get("result")


def run_status(args: argparse.Namespace) -> int:
    try:
        from .client_cli import default_urls

        st = rpc_call(args.rpc or default_urls()[0], "status", timeout=args.timeout,
                      ca_file=args.ca_file)
    except RuntimeError as exc:
        _err("status", str(exc))
        return EXIT_FAIL
    if args.json:
        print(json.dumps(st))
    else:
        for k in ("node_id", "chain_id", "validator_index", "height", "view", "primary",
                  "in_view_change", "last_block_hash", "peers"):
            if k in st:
                print(f"{k:16} {st[k]}")
    return EXIT_OK


# ---------------------------------------------------------------- client


def _add_client(sub: Any) -> None:
    try:
        from . import client_cli
    except ImportError as exc:
        reason = str(exc)

        def unavailable(args: argparse.Namespace) -> int:
            _err("client", f"not available: {reason}")
            return EXIT_USAGE

        p = sub.add_parser("client", help="client commands (unavailable)")
        p.set_defaults(func=unavailable)
        return
    client_cli.add_client_arguments(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bftnode", description="bftnode: a BFT ledger node")
    parser.add_argument("--version", action="version", version=f"bftnode {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_keygen(sub)
    _add_init(sub)
    _add_testnet_files(sub)
    _add_start(sub)
    _add_status(sub)
    _add_client(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if argv is None:  # a shell asking for completions (argcomplete): answer and exit
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        if args.command == "client":
            from . import client_cli

            return int(client_cli.run_client(args) or 0)
        parser.error(f"no handler for {args.command}")
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
