"""`python -m testnet partition|heal|link`: cut and shape the links of a local testnet.

On a `--netns` testnet (manifest key `netns`) cuts are kernel routes inside the nodes'
namespaces (testnet/netns.py), recorded in the manifest's `cuts` as directed (src, dst) pairs;
otherwise they are rules in each node's link-faults.json that its transport applies
(testnet/adversary/link_faults.py). Link profiles (`link`) need `--netns`: qdiscs on each
node's egress. Exit codes: 0 done, 2 the testnet or the kernel cannot do it (the message says).
Imports: stdlib, testnet.launcher, testnet.netns, testnet.adversary.link_faults.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from testnet import netns as ns
from testnet.launcher import LINK_FAULTS_FILE, LauncherError, read_manifest, write_manifest


def set_link_rules(d: str | os.PathLike, rules: dict[int, Any]) -> None:
    """Write each node's link rules file (link_faults.LinkRules); nodes apply them live."""
    from testnet.adversary.link_faults import LinkRules, write_rules

    m = read_manifest(d)
    for node in m["nodes"]:
        r = rules.get(node["index"]) or LinkRules()
        write_rules(Path(node["home"]) / LINK_FAULTS_FILE, r)


def partition(d: str | os.PathLike, groups: list[list[int]]) -> None:
    """Cut every link between different groups (nodes in no group are isolated from all): in
    the kernel on a --netns testnet, else in the nodes' transports."""
    m = read_manifest(d)
    cuts = ns.cuts_for_groups(len(m["nodes"]), groups)
    if m.get("netns"):
        cut(d, cuts)
    else:
        block(d, cuts)


def block(d: str | os.PathLike, cuts: list[tuple[int, int]]) -> None:
    """Transport rules (replacing those in place): both ends of each cut drop the other's
    frames, so a transport cut is always two-way."""
    from testnet.adversary.link_faults import LinkRules

    m = read_manifest(d)
    blocked: dict[int, set[int]] = {x["index"]: set() for x in m["nodes"]}
    for a, b in cuts:
        blocked[a].add(b)
        blocked[b].add(a)
    set_link_rules(d, {i: LinkRules(blocked=frozenset(s)) for i, s in blocked.items()})


def cut(d: str | os.PathLike, cuts: list[tuple[int, int]]) -> None:
    """--netns testnet only: add kernel cuts (src, dst) to those in place."""
    m = read_manifest(d)
    if not m.get("netns"):
        raise LauncherError(f"{d} is not a --netns testnet: kernel cuts need `up --netns`")
    n = len(m["nodes"])
    for a, b in cuts:
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise LauncherError(f"bad cut {a}->{b}: nodes are 0..{n - 1}, two different ones")
    ns.apply_cuts(ns.Plan.from_dict(m["netns"]), cuts)
    m["cuts"] = sorted({(int(a), int(b)) for a, b in m.get("cuts", [])} | set(cuts))
    write_manifest(d, m)


def heal(d: str | os.PathLike) -> None:
    """Restore every link: kernel cuts on a --netns testnet, and the transports' rules."""
    m = read_manifest(d)
    if m.get("netns"):
        ns.heal(ns.Plan.from_dict(m["netns"]))
        m.pop("cuts", None)
        write_manifest(d, m)
    set_link_rules(d, {})


def link(d: str | os.PathLike, profile: str, nodes: list[int] | None = None,
         to: list[int] | None = None) -> list[int]:
    """Put link profile `profile` on the egress of `nodes` (default all) of a --netns testnet,
    toward `to` only if given (per pair)."""
    m = read_manifest(d)
    if not m.get("netns"):
        raise LauncherError(f"{d} is not a --netns testnet: link profiles need `up --netns`")
    every = [x["index"] for x in m["nodes"]]
    chosen = every if not nodes else nodes
    for i in [*chosen, *(to or [])]:
        if i not in every:
            raise LauncherError(f"node {i}: nodes are 0..{len(every) - 1}")
    ns.apply_link(ns.Plan.from_dict(m["netns"]), profile, chosen, to)
    shaped = m.setdefault("links", {})
    for i in chosen:
        if profile == "clear":
            shaped.pop(str(i), None)
        else:
            shaped[str(i)] = f"{profile} to {sorted(to)}" if to else profile
    write_manifest(d, m)
    return chosen


# ---------------------------------------------------------------- command line


def _parse_groups(text: str) -> list[list[int]]:
    try:
        return [[int(x) for x in g.split(",") if x.strip()] for g in text.split("/")]
    except ValueError:
        raise LauncherError(f"bad --groups {text!r}: expected e.g. 0,1/2,3") from None


def add_partition_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data", help="testnet directory")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--groups", help="node groups that can still talk, e.g. 0,1/2,3")
    how.add_argument("--isolate", type=int, metavar="I", help="cut node I from every other")
    how.add_argument("--from", dest="src", type=int, metavar="I",
                     help="cut the link between I and --to J (adds to the cuts in place)")
    p.add_argument("--to", dest="dst", type=int, metavar="J")
    p.add_argument("--one-way", action="store_true",
                   help="with --from/--to: only I's packets to J (--netns testnets)")


def _cuts(args: argparse.Namespace, n: int) -> tuple[list[tuple[int, int]], str]:
    if args.groups is not None:
        groups = _parse_groups(args.groups)
        return ns.cuts_for_groups(n, groups), f"into {groups}"
    if args.isolate is not None:
        if not 0 <= args.isolate < n:
            raise LauncherError(f"--isolate {args.isolate}: nodes are 0..{n - 1}")
        others = [j for j in range(n) if j != args.isolate]
        return ns.cuts_for_groups(n, [[args.isolate], others]), f"node {args.isolate} off"
    if args.dst is None:
        raise LauncherError("--from needs --to")
    pair = [(args.src, args.dst)] if args.one_way else [(args.src, args.dst), (args.dst, args.src)]
    return pair, f"{args.src} {'->' if args.one_way else '<->'} {args.dst}"


def run_partition(args: argparse.Namespace) -> int:
    try:
        m = read_manifest(args.dir)
        cuts, what = _cuts(args, len(m["nodes"]))
        if args.one_way and args.src is None:
            raise LauncherError("--one-way goes with --from I --to J")
        if m.get("netns"):
            cut(args.dir, cuts)
        elif args.one_way:
            raise LauncherError("--one-way needs a --netns testnet (transport cuts are two-way)")
        else:
            block(args.dir, cuts)
    except (LauncherError, ns.NetnsError, OSError) as exc:
        print(f"partition: {exc}", file=sys.stderr)
        return 2
    where = "in the kernel" if m.get("netns") else "in the transports"
    print(f"partitioned {args.dir} {what} ({where})")
    return 0


def add_heal_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data", help="testnet directory")


def run_heal(args: argparse.Namespace) -> int:
    try:
        heal(args.dir)
    except (LauncherError, ns.NetnsError, OSError) as exc:
        print(f"heal: {exc}", file=sys.stderr)
        return 2
    print(f"healed every link of {args.dir}")
    return 0


def add_link_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./testnet-data", help="testnet directory")
    p.add_argument("--profile", required=True, choices=list(ns.PROFILES),
                   help="; ".join(f"{k}: {v['doc']}" for k, v in ns.PROFILES.items()))
    p.add_argument("--node", type=int, action="append", default=[], metavar="I",
                   help="only node I's egress (repeatable; default every node)")
    p.add_argument("--to", type=int, action="append", default=[], metavar="J",
                   help="only the packets to node J (repeatable): per-pair shaping")


def run_link(args: argparse.Namespace) -> int:
    try:
        nodes = link(args.dir, args.profile, args.node, args.to)
    except (LauncherError, ns.NetnsError, OSError) as exc:
        print(f"link: {exc}", file=sys.stderr)
        return 2
    to = f" toward {args.to}" if args.to else ""
    print(f"link profile {args.profile} on nodes {nodes}{to}")
    return 0
