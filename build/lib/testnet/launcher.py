"""`python -m testnet up|down|status|kill|restart|logs`: a local testnet of real node processes.

Owns DIR's layout: DIR/node<i>/ (a bftnode home: config.toml, node_key.json, genesis.json,
data/, node.log, plus the testnet's adversary.json: the node's byzantine strategies and its
link rules file link-faults.json) and DIR/testnet.json (chain id and, per node: index, node_id,
pid, rpc URL, p2p multiaddr, home dir, log file, byzantine strategies). Every node is
`python -m testnet node --home DIR/node<i>` (testnet/adversary/node.py: `bftnode start` with
the home's adversary) on 127.0.0.1, or with `--netns` inside its own network namespace on its
own address (testnet/netns.py; the manifest's `netns` names them), in its own session so a Ctrl-C in
the launcher's terminal reaches only the launcher, which then stops the nodes (SIGTERM, then
SIGKILL after a grace period). Re-running `up` on an existing DIR restarts the same chain.
`up --tls` serves every RPC over TLS with DIR/tls/ (testnet/tls_certs.py: a CA, ca.pem, and a
certificate per node); the manifest's nodes then carry https URLs and `ca_file`.
Imports: stdlib, httpx, rich, bftnode, testnet.adversary, testnet.tls_certs (lazily).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bftnode.config import CONFIG_FILE, ConfigError, write_config
from bftnode.genesis import load_genesis
from bftnode.home import DEFAULT_BASE_PORT, HomeError, create_local_chain
from testnet import netns as ns
from testnet.adversary.node import (
    Adversary,
    AdversaryError,
    read_adversary,
    write_adversary,
)
from testnet.chain_access import ADMIN_KEY, TLS_CA, admin_app, auth_note, with_tls

MANIFEST = "testnet.json"
READY_TIMEOUT_S = 60.0
LINK_FAULTS_FILE = "link-faults.json"  # per node home; see testnet/adversary/link_faults.py
STOP_GRACE_S = 10.0
ROOT = Path(__file__).resolve().parents[1]


class LauncherError(Exception):
    """A testnet command cannot proceed (the message says why)."""


# ---------------------------------------------------------------- manifest and processes


def manifest_path(d: str | os.PathLike) -> Path:
    return Path(d).resolve() / MANIFEST


def read_manifest(d: str | os.PathLike) -> dict[str, Any]:
    p = manifest_path(d)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise LauncherError(f"{p} not found: no testnet in {d} (run `python -m testnet up`)") from None
    except json.JSONDecodeError as exc:
        raise LauncherError(f"{p} is not valid JSON: {exc}") from exc


def write_manifest(d: str | os.PathLike, m: dict[str, Any]) -> None:
    p = manifest_path(d)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(m, indent=2) + "\n")
    os.replace(tmp, p)


PF_KTHREAD = 0x00200000  # /proc/<pid>/stat flags: a kernel thread


def pid_alive(pid: int | None, home: str | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when `home` is given, is that node's process."""
    if not pid:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return False
        if home is not None:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not raw:  # mid-exec (`ip netns exec` replaces itself by the node), or a
                return not int(fields[6]) & PF_KTHREAD  # kernel thread that took the pid
            return home.encode() in raw.split(b"\0")
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def _reap() -> None:
    """Collect exited children of this launcher so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


BYZANTINE_NICE = 10
"""CPU priority (nice) of a node with byzantine strategies. On a real network an attacker
burns its own machine's CPU (signing a flood, say); on one shared test host it would take the
honest nodes' CPU instead, and a latency check would measure the host, not the nodes. Set
BFTNODE_BYZANTINE_NICE=0 to run it at the honest nodes' priority."""


def _byzantine_nice() -> int:
    try:
        return max(0, min(19, int(os.environ.get("BFTNODE_BYZANTINE_NICE", BYZANTINE_NICE))))
    except ValueError:
        return BYZANTINE_NICE


def start_node_process(node: dict[str, Any]) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(node["log"], "ab")  # noqa: SIM115 - handed to the child
    prefix = ns.exec_prefix(node["netns"]) if node.get("netns") else []
    try:
        p = subprocess.Popen(
            [*prefix, sys.executable, "-m", "testnet", "node", "--home", node["home"]],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT),
            env=env, start_new_session=True,
        )
    finally:
        log.close()
    nice = _byzantine_nice() if node.get("byzantine") else 0
    if nice:
        with contextlib.suppress(OSError):  # gone already: its start failure is reported
            os.setpriority(os.PRIO_PROCESS, p.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    return p.pid


def stop_pid(pid: int | None, home: str | None, hard: bool = False,
             grace_s: float = STOP_GRACE_S) -> bool:
    """SIGKILL (hard) or SIGTERM then SIGKILL after `grace_s`; True once the process is gone."""
    if not pid_alive(pid, home):
        return True
    assert pid is not None
    try:
        os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap()
        if not pid_alive(pid, home):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        _reap()
        if not pid_alive(pid, home):
            return True
        time.sleep(0.05)
    return False


def rpc(url: str, method: str, params: dict | None = None, timeout: float = 2.0,
        ca_file: str | None = None) -> Any:
    import httpx

    from bftnode.client.tls import http_verify

    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                              "params": params or {}}, timeout=timeout,
                   verify=http_verify(ca_file))
    data = r.json()
    if "error" in data:
        raise LauncherError(f"{method}: {data['error'].get('message')}")
    return data["result"]


def node_status(node: dict[str, Any], timeout: float = 1.0) -> dict[str, Any]:
    alive = pid_alive(node.get("pid"), node["home"])
    row: dict[str, Any] = {"index": node["index"], "pid": node.get("pid") if alive else None,
                           "alive": alive, "rpc": node["rpc"]}
    if alive:
        try:
            st = rpc(node["rpc"], "status", timeout=timeout, ca_file=node.get("ca_file"))
            row.update({k: st.get(k) for k in ("height", "view", "primary", "peers",
                                               "in_view_change", "last_block_hash",
                                               "txs_committed", "why")})
            row["ok"] = True
        except Exception as exc:  # starting up, or wedged: show it, do not crash the table
            row["ok"] = False
            row["error"] = str(exc)[:80] or type(exc).__name__
    return row


def all_status(m: dict[str, Any], timeout: float = 1.0) -> list[dict[str, Any]]:
    with concurrent.futures.ThreadPoolExecutor(max(1, len(m["nodes"]))) as pool:
        return list(pool.map(lambda n: node_status(n, timeout), m["nodes"]))


def wait_ready(m: dict[str, Any], indices: list[int] | None = None,
               timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the nodes answer `status` over RPC; LauncherError with the log tail of a node
    that exited or stayed silent."""
    todo = set(indices if indices is not None else [n["index"] for n in m["nodes"]])
    deadline = time.monotonic() + timeout
    while todo:
        for i in sorted(todo):
            n = m["nodes"][i]
            if not pid_alive(n.get("pid"), n["home"]):
                _reap()
                raise LauncherError(f"node {i} exited during start-up:\n{tail(n['log'], 15)}")
            try:
                st = rpc(n["rpc"], "status", timeout=0.5, ca_file=n.get("ca_file"))
            except Exception:
                continue
            if n.get("node_id") and st.get("node_id") not in (None, n["node_id"]):
                # e.g. another testnet holds the port and our node failed to bind it
                raise LauncherError(
                    f"node {i}: {n['rpc']} is answered by another node ({st.get('node_id')}), "
                    f"not ours:\n{tail(n['log'], 15)}")
            todo.discard(i)
        if todo and time.monotonic() > deadline:
            i = min(todo)
            raise LauncherError(f"node {i} did not answer on {m['nodes'][i]['rpc']} within "
                                f"{timeout:.0f}s:\n{tail(m['nodes'][i]['log'], 15)}")
        if todo:
            time.sleep(0.1)


def tail(path: str, lines: int = 20) -> str:
    try:
        data = Path(path).read_bytes()[-256 * 1024:]
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# ---------------------------------------------------------------- up


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=4, help="validators (3f+1, >= 4)")
    p.add_argument("--dir", default="./testnet-data", help="testnet directory")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help="node i uses p2p base+2i and rpc base+2i+1")
    p.add_argument("--byzantine", action="append", default=[], metavar="I:STRATEGY[,…]",
                   help="make validator I byzantine (repeatable), e.g. 3:silent")
    p.add_argument("--detach", action="store_true", help="start and return (no live table)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--chain-id", help="chain id of a new testnet")
    p.add_argument("--consensus", action="append", default=[], metavar="KEY=INT",
                   help="consensus parameter of a new testnet, e.g. timeout_request_ms=1000")
    p.add_argument("--compression", choices=("snappy", "none"),
                   help="LevelDB table compression of every node (config.toml `compression`)")
    p.add_argument("--no-fsync", action="store_true",
                   help="nodes fsync nothing (config.toml `fsync = false`): kill -9 still loses "
                        "nothing, a power cut can lose votes; for dev testnets and slow disks")
    p.add_argument("--max-open-files", type=int, metavar="N",
                   help="LevelDB table cache per DB of every node (config.toml `max_open_files`)")
    p.add_argument("--authenticated-state", action=argparse.BooleanOptionalAction,
                   default=None,
                   help="the nodes keep the state tree, certify its roots and answer reads "
                        "with proofs (config.toml `authenticated_state`; default: the node's)")
    p.add_argument("--tls", action="store_true",
                   help="serve every RPC over TLS with certificates of a new testnet CA "
                        "(DIR/tls/ca.pem: give clients --ca-file; docs/operations.md)")
    p.add_argument("--netns", action="store_true",
                   help="each node in its own network namespace on its own 10.77.x.y address "
                        "(needs root; docs/operations.md)")
    p.add_argument("--open", action="store_true",
                   help="dev only: a new testnet without permission checks or admin key "
                        "(any client key may write anything; docs/consistency.md)")


def _parse_byzantine(specs: list[str], n: int) -> dict[int, list[str]]:
    if not specs:
        return {}
    from testnet.adversary import parse_byzantine

    return parse_byzantine(specs, n)


def run_up(args: argparse.Namespace) -> int:
    d = Path(args.dir).resolve()
    try:
        byz = _parse_byzantine(args.byzantine, args.nodes)
        consensus = {}
        for item in args.consensus:
            k, sep, v = item.partition("=")
            if not sep or not v.strip().lstrip("-").isdigit():
                raise LauncherError(f"--consensus {item!r}: expected KEY=INTEGER")
            consensus[k.strip()] = int(v)
        m = up(d, args.nodes, base_port=args.base_port, byzantine=byz,
               log_level=args.log_level, chain_id=args.chain_id, consensus=consensus or None,
               compression=args.compression, fsync=False if args.no_fsync else None,
               max_open_files=args.max_open_files, netns=args.netns,
               authenticated_state=args.authenticated_state, tls=args.tls,
               open_chain=args.open)
    except ns.NetnsError as exc:
        print(f"testnet up: {exc}", file=sys.stderr)
        return 2
    except (LauncherError, HomeError, ConfigError, ValueError) as exc:
        print(f"testnet up: {exc}", file=sys.stderr)
        return 1
    print(f"testnet {m['chain_id']}: {len(m['nodes'])} nodes up in {d}")
    for n in m["nodes"]:
        byz_note = f"  byzantine: {','.join(n['byzantine'])}" if n["byzantine"] else ""
        print(f"  node{n['index']}  pid {n['pid']}  rpc {n['rpc']}  p2p {n['p2p']}{byz_note}")
    ca = m["nodes"][0].get("ca_file")
    if ca:
        print(f"RPC over TLS: clients trust {ca} (--ca-file / ca_file=)")
    print(auth_note(m))
    if args.detach:
        print(f"stop with: python -m testnet down --dir {args.dir}")
        return 0

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, interrupt)
    try:
        live_table(d)
    except KeyboardInterrupt:
        pass
    print("stopping nodes ...", file=sys.stderr)
    down(d)
    return 0


def up(d: Path, n: int = 4, *, base_port: int = DEFAULT_BASE_PORT,
       byzantine: dict[int, list[str]] | None = None, log_level: str = "info",
       chain_id: str | None = None, consensus: dict[str, Any] | None = None,
       ready_timeout: float = READY_TIMEOUT_S,
       compression: str | None = None, fsync: bool | None = None,
       max_open_files: int | None = None,
       authenticated_state: bool | None = None, netns: bool = False,
       tls: bool = False, open_chain: bool = False) -> dict[str, Any]:
    """Create (or reuse) the testnet in `d`, start every node, wait until all answer RPC and
    return the manifest. `compression`/`fsync`/`max_open_files`/`authenticated_state` None:
    keep each node's config. `netns`: every node in its own network namespace (root only).
    `tls`: every RPC over TLS (`tls_certs.write_testnet_tls`; a restart keeps the configs).
    A new testnet's genesis names DIR/admin.key its admin with permission checks on (the
    manifest's `admin_key`); `open_chain` (dev only, `--open`): no admin, checks off. A reused
    DIR keeps its genesis. Raises LauncherError, or NetnsError for a namespace problem."""
    d = Path(d).resolve()
    old_m = read_manifest(d) if manifest_path(d).exists() else None
    if old_m is not None:
        running = [x["index"] for x in old_m["nodes"] if pid_alive(x.get("pid"), x["home"])]
        if running:
            raise LauncherError(f"testnet in {d} is already running (nodes {running}); "
                                "use `status`, `down` or `restart`")
    plan = None
    if netns:
        plan = ns.plan_for(d, n, old_m.get("netns") if old_m else None)
    d.mkdir(parents=True, exist_ok=True)
    new = not (d / "node0" / CONFIG_FILE).exists()
    cfgs = create_local_chain(d, n, base_port=base_port, log_level=log_level,
                              chain_id=chain_id, consensus=consensus,
                              hosts=[plan.addr(i) for i in range(n)] if plan else None,
                              app=admin_app(d) if new and not open_chain else None)
    ns.check_hosts(d, [c.p2p_listen for c in cfgs], plan)
    if tls:
        cfgs = with_tls(d, cfgs)
    advs = []
    for i, c in enumerate(cfgs):
        # a restart may change who misbehaves; every testnet node accepts link faults
        old = read_adversary(c.home)
        want = tuple(byzantine.get(i, ())) if byzantine is not None else old.byzantine
        advs.append(Adversary(want, LINK_FAULTS_FILE))
        if advs[i] != old:
            write_adversary(c.home, advs[i])
        comp = compression or c.compression
        fs = c.fsync if fsync is None else fsync
        mof = c.max_open_files if max_open_files is None else max_open_files
        auth = c.authenticated_state if authenticated_state is None else authenticated_state
        # a --netns node binds its RPC on the namespace bridge's private address
        insecure = c.insecure_rpc or plan is not None
        if (c.compression, c.fsync, c.max_open_files, c.authenticated_state,
                c.insecure_rpc) != (comp, fs, mof, auth, insecure):
            cfgs[i] = dataclasses.replace(c, compression=comp, fsync=fs, max_open_files=mof,
                                          authenticated_state=auth, insecure_rpc=insecure)
            write_config(cfgs[i])
    genesis = load_genesis(cfgs[0].genesis_path)
    shutil.copyfile(cfgs[0].genesis_path, d / "genesis.json")  # what clients pin
    nodes = []
    for c, adv in zip(cfgs, advs, strict=True):
        nodes.append({
            "index": c.node_index,
            "node_id": genesis.validators[c.node_index].public_key,
            "pid": None,
            "rpc": f"{'https' if c.rpc_tls else 'http'}://{c.rpc_host}:{c.rpc_port}",
            "ca_file": str(d / TLS_CA) if c.rpc_tls else None,
            "p2p": c.p2p_listen,
            "home": str(c.home),
            "log": str(c.home / "node.log"),
            "byzantine": list(adv.byzantine),
        })
    admin = d / ADMIN_KEY
    m = {"chain_id": genesis.chain_id, "dir": str(d), "genesis_hash": genesis.hash().hex(),
         "nodes": nodes, "auth_enabled": bool(genesis.app.get("auth_enabled")),
         "admin_key": str(admin) if genesis.app.get("admins") and admin.exists() else None}
    if plan is not None:
        m["netns"] = plan.to_dict()
        for node in nodes:
            node["netns"], node["addr"] = plan.ns(node["index"]), plan.addr(node["index"])
        write_manifest(d, m)  # first: `down` finds the namespaces even if setup dies midway
        ns.setup(plan)
    for node in nodes:
        node["pid"] = start_node_process(node)
    write_manifest(d, m)
    try:
        wait_ready(m, timeout=ready_timeout)
    except LauncherError:
        down(d)
        raise
    return m


# ---------------------------------------------------------------- live table


def _table(rows: list[dict[str, Any]], rates: dict[int, float], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for col in ("node", "pid", "height", "view", "primary", "peers", "tx/s", "last block",
                "state"):
        t.add_column(col, justify="right" if col not in ("last block", "state") else "left")
    for r in rows:
        if not r["alive"]:
            state = "[red]down[/red]"
        elif not r.get("ok"):
            state = f"[yellow]{r.get('error', 'no rpc')}[/yellow]"
        elif r.get("why"):
            state = f"[yellow]{r['why']}[/yellow]"
        elif r.get("in_view_change"):
            state = "[yellow]view change[/yellow]"
        else:
            state = "[green]ok[/green]"
        t.add_row(
            f"node{r['index']}", str(r.get("pid") or "-"), str(r.get("height", "-")),
            str(r.get("view", "-")), str(r.get("primary", "-")), str(r.get("peers", "-")),
            f"{rates.get(r['index'], 0.0):.1f}",
            (r.get("last_block_hash") or "-")[:12], state,
        )
    return t


def live_table(d: Path, interval: float = 1.0) -> None:
    """Refresh a status table until Ctrl-C (KeyboardInterrupt propagates to the caller)."""
    from rich.live import Live

    m = read_manifest(d)
    prev: dict[int, tuple[float, int]] = {}
    rates: dict[int, float] = {}
    title = f"testnet {m['chain_id']} ({d}) — Ctrl-C stops the nodes"
    with Live(_table(all_status(m), rates, title), refresh_per_second=4) as live:
        while True:
            time.sleep(interval)
            _reap()
            m = read_manifest(d)  # `restart` from another terminal updates pids
            rows = all_status(m)
            now = time.monotonic()
            for r in rows:
                txs = r.get("txs_committed")
                if isinstance(txs, int):
                    if r["index"] in prev:
                        t0, c0 = prev[r["index"]]
                        rates[r["index"]] = max(0.0, (txs - c0) / max(now - t0, 1e-6))
                    prev[r["index"]] = (now, txs)
            live.update(_table(rows, rates, title))


# ---------------------------------------------------------------- status, down, kill, restart, logs


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data")
    p.add_argument("--json", action="store_true", help="one JSON object")


def run_status(args: argparse.Namespace) -> int:
    try:
        m = read_manifest(args.dir)
    except LauncherError as exc:
        print(f"testnet status: {exc}", file=sys.stderr)
        return 1
    rows = all_status(m)
    if args.json:
        print(json.dumps({"chain_id": m["chain_id"], "dir": m["dir"], "nodes": [
            {**r, "node_id": n["node_id"], "home": n["home"], "p2p": n["p2p"],
             "byzantine": n.get("byzantine", [])}
            for r, n in zip(rows, m["nodes"], strict=True)]}))
    else:
        from rich.console import Console

        Console().print(_table(rows, {}, f"testnet {m['chain_id']} ({m['dir']})"))
    return 0


def add_down_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data")


def down(d: str | os.PathLike) -> list[int]:
    """Stop every node; on a --netns testnet also remove its namespaces and bridge (and
    whatever a crashed run of the same directory left, found by name)."""
    m = read_manifest(d)
    stopped = []
    for n in m["nodes"]:  # SIGTERM everyone first, then wait: parallel shutdown
        if pid_alive(n.get("pid"), n["home"]):
            os.kill(n["pid"], signal.SIGTERM)
    for n in m["nodes"]:
        if n.get("pid"):
            stop_pid(n["pid"], n["home"])
            stopped.append(n["index"])
            n["pid"] = None
    m.pop("cuts", None)  # they go with the namespaces
    m.pop("links", None)
    write_manifest(d, m)
    if m.get("netns"):
        ns.cleanup(ns.testnet_id(m["dir"]))
    return stopped


def run_down(args: argparse.Namespace) -> int:
    try:
        if not manifest_path(args.dir).exists():
            nss, links = ns.cleanup(ns.testnet_id(args.dir))
            if nss or links:
                print(f"removed what a crashed run left: namespaces {nss}, links {links}")
                return 0
        stopped = down(args.dir)
    except ns.NetnsError as exc:
        print(f"testnet down: {exc}", file=sys.stderr)
        return 2
    except LauncherError as exc:
        print(f"testnet down: {exc}", file=sys.stderr)
        return 1
    print(f"stopped nodes {stopped}" if stopped else "no node was running")
    return 0


def add_kill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data")
    p.add_argument("--node", type=int, required=True)
    p.add_argument("--hard", action="store_true", help="SIGKILL (no clean shutdown)")


def kill(d: str | os.PathLike, index: int, hard: bool = False) -> None:
    m = read_manifest(d)
    if not 0 <= index < len(m["nodes"]):
        raise LauncherError(f"--node {index}: the testnet has nodes 0..{len(m['nodes']) - 1}")
    n = m["nodes"][index]
    if not stop_pid(n.get("pid"), n["home"], hard=hard):
        raise LauncherError(f"node {index} (pid {n['pid']}) did not stop")
    n["pid"] = None
    write_manifest(d, m)


def run_kill(args: argparse.Namespace) -> int:
    try:
        kill(args.dir, args.node, args.hard)
    except LauncherError as exc:
        print(f"testnet kill: {exc}", file=sys.stderr)
        return 1
    print(f"node{args.node} {'killed' if args.hard else 'stopped'}")
    return 0


def add_restart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data")
    p.add_argument("--node", type=int, required=True)


def restart(d: str | os.PathLike, index: int, ready_timeout: float = READY_TIMEOUT_S) -> int:
    m = read_manifest(d)
    if not 0 <= index < len(m["nodes"]):
        raise LauncherError(f"--node {index}: the testnet has nodes 0..{len(m['nodes']) - 1}")
    n = m["nodes"][index]
    stop_pid(n.get("pid"), n["home"])
    try:
        n["byzantine"] = list(read_adversary(n["home"]).byzantine)
    except AdversaryError as exc:
        raise LauncherError(str(exc)) from None
    n["pid"] = start_node_process(n)
    write_manifest(d, m)
    wait_ready(m, [index], timeout=ready_timeout)
    return n["pid"]


def run_restart(args: argparse.Namespace) -> int:
    try:
        pid = restart(args.dir, args.node)
    except LauncherError as exc:
        print(f"testnet restart: {exc}", file=sys.stderr)
        return 1
    print(f"node{args.node} restarted (pid {pid})")
    return 0


def add_logs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data")
    p.add_argument("--node", type=int, required=True)
    p.add_argument("--lines", type=int, default=50, help="0 = the whole log")
    p.add_argument("--follow", "-f", action="store_true")


def run_logs(args: argparse.Namespace) -> int:
    try:
        m = read_manifest(args.dir)
        if not 0 <= args.node < len(m["nodes"]):
            raise LauncherError(f"--node {args.node}: nodes are 0..{len(m['nodes']) - 1}")
    except LauncherError as exc:
        print(f"testnet logs: {exc}", file=sys.stderr)
        return 1
    path = m["nodes"][args.node]["log"]
    if args.lines:
        print(tail(path, args.lines))
    else:
        sys.stdout.write(Path(path).read_text(errors="replace"))
    if args.follow:
        try:
            with open(path, errors="replace") as fh:
                fh.seek(0, os.SEEK_END)
                while True:
                    line = fh.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0
