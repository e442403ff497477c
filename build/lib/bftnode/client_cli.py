"""`bftnode client …`: the command-line client (argparse), a thin shell over bftnode.client.

Owns the client subcommands and their output: human text by default, exactly one JSON object
on stdout with `--json` (errors too: {"error": {...}}). Common options (`--rpc URL`, repeatable
for failover, http:// or https://; `--key FILE`, created on first use; `--json`; `--timeout`;
`--genesis FILE`, the pinned validator set; `--ca-file FILE`, the CAs an https:// node is
checked against; `--trust-node`) may be given before or after the subcommand. Reads are
verified against the pinned set, and refused without one unless `--trust-node`. Exit codes: 0 ok, 1 failed (node error, rejected/failed tx, timeout),
2 usage. `auth …`: bftnode.client_cli_auth. Imports: stdlib, bftnode.client, bftnode.app.ops (lazily). Must not import trio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from .client_cli_auth import add_auth_arguments

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TARGETS = ("value", "version", "create", "mod", "lease")
COMPARE_OPS = ("=", "!=", "<", ">")


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--rpc", action="append", metavar="URL",
                   help="node JSON-RPC URL (repeat for failover; default $BFTNODE_RPC or "
                        "http://127.0.0.1:26657)", **({"default": None} if top else d))
    p.add_argument("--key", dest="key_file", metavar="FILE", help="client key file (created on first use; "
                   "default $BFTNODE_HOME/client.key or ~/.bftnode/client.key)",
                   **({"default": None} if top else d))
    p.add_argument("--json", action="store_true", help="print one JSON object",
                   **({"default": False} if top else d))
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="how long to wait for a commit (default 10)",
                   **({"default": 10.0} if top else d))
    p.add_argument("--genesis", metavar="FILE",
                   help="the chain's genesis file: pins the validator set every answer is "
                        "verified against (default $BFTNODE_GENESIS, or genesis.json in the "
                        "client home: $BFTNODE_HOME or ~/.bftnode)",
                   **({"default": None} if top else d))
    p.add_argument("--ca-file", metavar="FILE",
                   help="PEM file of the CA(s) an https:// node's certificate is checked "
                        "against (default: the system's trust store)",
                   **({"default": None} if top else d))
    p.add_argument("--trust-node", action="store_true",
                   help="read without verifying proofs (trusts the node that answers)",
                   **({"default": False} if top else d))


def add_client_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add `client` and its subcommands to the `bftnode` CLI's subparsers."""
    client = subparsers.add_parser("client", help="talk to a chain: put/get/txn/lease/lock/…",
                                   description="Client commands (txs are signed with your key).")
    _common(client, top=True)
    sub = client.add_subparsers(dest="client_cmd", required=True, metavar="COMMAND")

    def leaf(name: str, func: Callable[..., Any], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        p.set_defaults(func=run_client, client_func=func)
        return p

    p = leaf("put", cmd_put, "write KEY=VALUE and wait for the commit")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--lease", type=int, default=0, help="attach the key to lease ID")

    p = leaf("get", cmd_get, "read KEY (value and revision)")
    p.add_argument("key")
    p.add_argument("--consistency", choices=("serializable", "linearizable"),
                   default="serializable",
                   help="serializable = this node's committed state (default); linearizable "
                        "= a read ordered through consensus")
    p.add_argument("--min-revision", type=int, help="wait until the node has this revision")
    p.add_argument("--revision", type=int, help="read at a past revision")

    p = leaf("delete", cmd_delete, "delete KEY (or every key with the prefix)")
    p.add_argument("key")
    p.add_argument("--prefix", action="store_true")

    p = leaf("range", cmd_range, "list keys under PREFIX")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--keys-only", action="store_true")

    p = leaf("txn", cmd_txn, "atomic if/then/else: --if 'KEY TARGET OP VALUE' "
             "--then 'put K V' --else 'get K'")
    p.add_argument("--if", dest="compare", action="append", default=[], metavar="COND",
                   help=f"'KEY TARGET OP VALUE', TARGET in {'/'.join(TARGETS)}, OP in "
                        f"{' '.join(COMPARE_OPS)}; VALUE 'nil' = missing key")
    p.add_argument("--then", dest="success", action="append", default=[], metavar="OP",
                   help="'put KEY VALUE' | 'del KEY' | 'get KEY'")
    p.add_argument("--else", dest="failure", action="append", default=[], metavar="OP")

    lease = sub.add_parser("lease", help="lease grant|keepalive|revoke|ttl")
    lsub = lease.add_subparsers(dest="lease_cmd", required=True, metavar="ACTION")

    def lleaf(name: str, func: Callable[..., Any], help_: str) -> argparse.ArgumentParser:
        p = lsub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        p.set_defaults(func=run_client, client_func=func)
        return p

    p = lleaf("grant", cmd_lease_grant, "grant a lease of TTL seconds (-> id)")
    p.add_argument("ttl", type=float)
    p = lleaf("keepalive", cmd_lease_keepalive, "renew lease ID once")
    p.add_argument("id", type=int)
    p = lleaf("revoke", cmd_lease_revoke, "revoke lease ID (deletes its keys)")
    p.add_argument("id", type=int)
    p = lleaf("ttl", cmd_lease_ttl, "time to live of lease ID")
    p.add_argument("id", type=int)

    lock = sub.add_parser("lock", help="lock acquire|release|status")
    ksub = lock.add_subparsers(dest="lock_cmd", required=True, metavar="ACTION")

    def kleaf(name: str, func: Callable[..., Any], help_: str) -> argparse.ArgumentParser:
        p = ksub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        p.set_defaults(func=run_client, client_func=func)
        return p

    p = kleaf("acquire", cmd_lock_acquire,
              "take lock NAME under a new lease of --ttl seconds (-> fencing token); the lock "
              "is held until released or the lease expires")
    p.add_argument("name")
    p.add_argument("--ttl", type=float, required=True)
    p.add_argument("--lease", type=int, help="use an existing lease instead of a new one")
    p.add_argument("--no-wait", action="store_true", help="fail instead of queueing")
    p = kleaf("release", cmd_lock_release, "release lock NAME held with fencing token T")
    p.add_argument("name")
    p.add_argument("--token", type=int, required=True)
    p = kleaf("status", cmd_lock_status, "who holds lock NAME")
    p.add_argument("name")

    election = sub.add_parser("election", help="election campaign|leader|resign")
    esub = election.add_subparsers(dest="election_cmd", required=True, metavar="ACTION")

    def eleaf(name: str, func: Callable[..., Any], help_: str) -> argparse.ArgumentParser:
        p = esub.add_parser(name, help=help_, description=help_)
        _common(p, top=False)
        p.set_defaults(func=run_client, client_func=func)
        return p

    p = eleaf("campaign", cmd_campaign, "campaign for NAME with VALUE under a lease of --ttl")
    p.add_argument("name")
    p.add_argument("value")
    p.add_argument("--ttl", type=float, required=True)
    p = eleaf("leader", cmd_leader, "current leader of NAME")
    p.add_argument("name")
    p = eleaf("resign", cmd_resign, "resign leadership of NAME held with token T")
    p.add_argument("name")
    p.add_argument("--token", type=int, required=True)

    p = leaf("tx", cmd_tx, "a committed tx by hash (with its commit certificate)")
    p.add_argument("hash")
    p = leaf("tx-status", cmd_tx_status, "is tx HASH committed? (COMMITTED, PENDING, "
             "EXPIRED or UNKNOWN)")
    p.add_argument("hash")
    p = leaf("block", cmd_block, "a committed block (latest if no HEIGHT)")
    p.add_argument("height", nargs="?", type=int)
    leaf("status", cmd_status, "the node's status")
    p = leaf("watch", cmd_watch, "print app events for keys under PREFIX until Ctrl-C")
    p.add_argument("prefix")
    p.add_argument("--from-revision", type=int)
    p.add_argument("--from-height", type=int)
    p.add_argument("--count", type=int, default=0, help="stop after N events")
    add_auth_arguments(sub, _common, run_client)
    client.set_defaults(func=run_client, client_func=None)
    return client


# ---------------------------------------------------------------- commands


def cmd_put(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.put(a.key, a.value, lease=a.lease)
    out = _tx_summary(r)
    return out, f"OK revision={out['revision']} height={out['height']} tx={out['hash']}"


def cmd_get(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.get(a.key, consistency=a.consistency, min_revision=a.min_revision,
              revision=a.revision)
    out = {k: r.get(k) for k in ("key", "value", "found", "revision", "mod_revision",
                                 "create_revision", "version", "height")}
    out["key"] = a.key
    if out["found"] is None:
        out["found"] = out["value"] is not None
    if not out["found"]:
        return out, f"(not found) revision={out['revision']}"
    return out, f"{_show(out['value'])}\nrevision={out['revision']} " \
                f"mod_revision={out['mod_revision']} version={out['version']}"


def cmd_delete(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    out = _tx_summary(c.delete(a.key, prefix=a.prefix))
    return out, f"deleted {out['result'].get('deleted', 0)} key(s) height={out['height']}"


def cmd_range(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.range(a.prefix, limit=a.limit, keys_only=a.keys_only)
    lines = [f"{_show(kv.get('key'))}" + ("" if a.keys_only else f" = {_show(kv.get('value'))}")
             for kv in r.get("kvs", [])]
    lines.append(f"({r.get('count', len(lines))} keys, revision={r.get('revision')})")
    return r, "\n".join(lines)


def cmd_txn(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    compare = [_parse_compare(s) for s in a.compare]
    success = [_parse_txn_op(s) for s in a.success]
    failure = [_parse_txn_op(s) for s in a.failure]
    out = _tx_summary(c.txn(compare, success, failure))
    ok = out["result"].get("succeeded")
    return out, f"{'SUCCESS' if ok else 'FAILURE'} height={out['height']} tx={out['hash']}\n" \
                + json.dumps(out["result"].get("responses", []))


def cmd_lease_grant(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    lease_id = c.lease_grant(a.ttl)
    return {"id": lease_id, "ttl": a.ttl}, f"lease {lease_id} granted (ttl {a.ttl:g}s)"


def cmd_lease_keepalive(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    out = _tx_summary(c.lease_keepalive(a.id))
    return out, f"lease {a.id} renewed, deadline_ms={out['result'].get('deadline_ms')}"


def cmd_lease_revoke(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    out = _tx_summary(c.lease_revoke(a.id))
    return out, f"lease {a.id} revoked ({out['result'].get('deleted_keys', 0)} keys deleted)"


def cmd_lease_ttl(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.lease_ttl(a.id)
    return r, f"lease {a.id}: remaining {r.get('remaining_ms')} ms of {r.get('ttl_ms')} ms"


def cmd_lock_acquire(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    lease_id = a.lease or c.lease_grant(a.ttl)
    token = c.lock_acquire(a.name, lease_id, wait=not a.no_wait, timeout=a.timeout)
    out = {"name": a.name, "token": token, "lease": lease_id}
    return out, f"token={token} lease={lease_id} (held until released or the lease expires)"


def cmd_lock_release(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    out = _tx_summary(c.lock_release(a.name, a.token))
    return out, f"released {a.name} (token {a.token})"


def cmd_lock_status(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.lock_status(a.name)
    h = r.get("holder")
    text = (f"{a.name}: held, token={h.get('token')} lease={h.get('lease')}" if h
            else f"{a.name}: free") + f", {len(r.get('waiters', []))} waiting"
    return r, text


def cmd_campaign(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    lease_id = c.lease_grant(a.ttl)
    token = c.campaign(a.name, lease_id, a.value, timeout=a.timeout)
    return {"name": a.name, "token": token, "lease": lease_id}, \
        f"leader of {a.name}: token={token} lease={lease_id}"


def cmd_leader(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.leader(a.name)
    if not r.get("has_leader"):
        return r, f"{a.name}: no leader"
    return r, f"{a.name}: leader={_show(r.get('leader'))} token={r.get('token')}"


def cmd_resign(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    return _tx_summary(c.resign(a.name, a.token)), f"resigned {a.name}"


def cmd_tx(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.tx(a.hash, prove=True)
    text = (f"tx {r['hash']}\nheight={r['height']} index={r['index']} code={r['code']} "
            f"({r.get('code_name')})\nresult={json.dumps(r.get('result'))}")
    return r, text


def cmd_tx_status(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.tx_status(a.hash)
    tx = r.get("tx") or {}
    text = f"{r.get('status')} height={r.get('height')}" + (
        f" code={tx.get('code')} ({tx.get('code_name')})" if r.get("committed") else "")
    return r, text


def cmd_block(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.block(a.height)
    text = (f"block {r['height']} hash={r['hash']}\nprev_hash={r['prev_hash']} time={r['time']} "
            f"txs={r.get('num_txs', len(r.get('txs', [])))} signers="
            f"{r.get('commit', {}).get('signers')}")
    return r, text


def cmd_status(c: Any, a: argparse.Namespace) -> tuple[dict, str]:
    r = c.status()
    return r, " ".join(f"{k}={r.get(k)}" for k in
                       ("node_id", "chain_id", "height", "view", "primary", "last_block_hash"))


def cmd_watch(c: Any, a: argparse.Namespace) -> tuple[dict, str] | None:
    n = 0
    for ev in c.watch(a.prefix, from_revision=a.from_revision, from_height=a.from_height):
        print(json.dumps(ev) if a.json else
              f"{ev.get('kind')} {_show(ev.get('key'))} rev={ev.get('revision')}"
              + (f" = {_show(ev.get('value'))}" if ev.get("value") is not None else ""),
              flush=True)
        n += 1
        if a.count and n >= a.count:
            break
    return None


# ---------------------------------------------------------------- helpers


def _show(v: Any) -> str:
    if isinstance(v, dict) and "base64" in v:
        return f"base64:{v['base64']}"
    return "" if v is None else str(v)


def _tx_summary(r: dict[str, Any]) -> dict[str, Any]:
    res = r.get("result") if isinstance(r.get("result"), dict) else {}
    return {"hash": r.get("hash"), "height": r.get("height"), "code": r.get("code"),
            "revision": res.get("revision"), "result": res, "verified": r.get("verified")}


def _parse_compare(spec: str) -> Any:
    from .app import ops

    parts = spec.split(None, 3)
    if len(parts) < 3 or parts[1] not in TARGETS or parts[2] not in COMPARE_OPS:
        raise ValueError(f"bad --if {spec!r}: expected 'KEY TARGET OP VALUE' with TARGET in "
                         f"{'/'.join(TARGETS)} and OP in {' '.join(COMPARE_OPS)}")
    key, target, op = parts[:3]
    raw = parts[3] if len(parts) == 4 else "nil"
    value: Any
    if raw == "nil":
        value = None
    elif target == "value":
        value = raw.encode()
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"bad --if {spec!r}: {target} compares with an integer") from None
    return ops.compare(key.encode(), target, op, value)


def _parse_txn_op(spec: str) -> Any:
    from .app import ops

    parts = spec.split(None, 2)
    if len(parts) == 3 and parts[0] == "put":
        return ops.put_op(parts[1].encode(), parts[2].encode())
    if len(parts) == 2 and parts[0] in ("del", "delete"):
        return ops.delete_op(parts[1].encode())
    if len(parts) == 2 and parts[0] in ("get", "range"):
        return ops.range_op(parts[1].encode())
    raise ValueError(f"bad txn op {spec!r}: expected 'put KEY VALUE', 'del KEY' or 'get KEY'")


def default_urls() -> list[str]:
    """The node URLs a command uses without --rpc: $BFTNODE_RPC (comma separated), else the
    local default."""
    env = os.environ.get("BFTNODE_RPC")
    if env:
        urls = [u.strip() for u in env.split(",") if u.strip()]
        if urls:
            return urls
    from .client import DEFAULT_URL

    return [DEFAULT_URL]


def _urls(args: argparse.Namespace) -> list[str]:
    return args.rpc or default_urls()


def run_client(args: argparse.Namespace) -> int:
    """Run the `bftnode client` subcommand in `args`; prints the result, returns the exit code."""
    func = getattr(args, "client_func", None)
    as_json = bool(getattr(args, "json", False))
    if func is None:
        print("error: give a client command (see `bftnode client --help`)", file=sys.stderr)
        return EXIT_USAGE
    from .client import Client, ClientError, find_genesis
    from .keys import KeyFileError

    trust = bool(getattr(args, "trust_node", False))
    genesis = find_genesis(getattr(args, "genesis", None))
    if genesis is None and not trust and func in READS:
        print("error: refusing to read unverified: pin the validator set with --genesis FILE "
              "(or $BFTNODE_GENESIS, or genesis.json in the client home), or pass "
              "--trust-node to trust the node that answers", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Client(_urls(args), args.key_file, timeout=args.timeout, genesis=genesis,
                    trust_node=trust, ca_file=args.ca_file) as c:
            out = func(c, args)
    except (ClientError, KeyFileError, ValueError) as exc:
        code = getattr(exc, "code", None)
        err = {"type": type(exc).__name__, "message": str(exc), "code": code}
        data = getattr(exc, "data", None)
        if data is not None:
            err["data"] = data
        if as_json:
            print(json.dumps({"error": err}))
        else:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) and code is None else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    if out is None:
        return EXIT_OK
    obj, text = out
    print(json.dumps(obj) if as_json else text)
    return EXIT_OK


# commands whose answers are proven (docs/rpc.md "Proofs"): never read unverified by default
READS = (cmd_get, cmd_range, cmd_lease_ttl, cmd_lock_status, cmd_leader, cmd_tx, cmd_tx_status)


def main(argv: list[str] | None = None) -> int:
    """`python -m bftnode.client_cli …` (same as `bftnode client …`)."""
    parser = argparse.ArgumentParser(prog="bftnode")
    sub = parser.add_subparsers(dest="command", required=True)
    add_client_arguments(sub)
    args = parser.parse_args(["client", *(argv if argv is not None else sys.argv[1:])])
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
