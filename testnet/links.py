"""`python -m testnet partition|heal|link`: cut and shape the links of a local testnet.

On a `--netns` testnet (manifest key `netns`) cuts are kernel routes inside the nodes'
namespaces (testnet/netns.py), recorded in the manifest's `cuts` as directed (src, dst) pairs;
otherwise they are rules in each node's link-faults.json that its transport applies
(testnet/adversary/link_faults.py). Link profiles (`link`) are qdiscs on each node's egress on
a `--netns` testnet, else (or with `--emulate`) the same delays, jitter, loss and rate in each
node's transport; a heal leaves them in place. Exit codes: 0 done, 2 the testnet or the kernel
cannot do it (the message says).
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
    """Write each node's link rules file (link_faults.LinkRules); nodes apply them live. A
    link profile in place (its egress shaping) stays: only `link` changes that."""
    from testnet.adversary.link_faults import LinkRules, read_rules, write_rules

    m = read_manifest(d)
    for node in m["nodes"]:
        path = Path(node["home"]) / LINK_FAULTS_FILE
        old = read_rules(path)
        r = rules.get(node["index"]) or LinkRules()
        write_rules(path, r.with_shaping(old.egress, old.rate_kbit))


def shape(d: str | os.PathLike, profile: str, nodes: list[int],
          to: list[int] | None = None) -> None:
    """Link profile `profile` in the transports of `nodes` (toward `to` only, if given): each
    node delays, jitters and loses what it sends like netem would on its egress. The stand-in
    for kernel shaping where there is no --netns or no netem; frames, not packets, are lost."""
    from testnet.adversary.link_faults import read_rules, write_rules

    m = read_manifest(d)
    n = len(m["nodes"])
    for node in m["nodes"]:
        i = node["index"]
        if i not in nodes:
            continue
        path = Path(node["home"]) / LINK_FAULTS_FILE
        old = read_rules(path)
        egress = {} if not to else dict(old.egress)
        rate = 0 if not to else old.rate_kbit
        for j in (to or range(n)):
            if j == i:
                continue
            link_shape, rate_j = ns.emulated(profile, i, j)
            egress.pop(j, None)
            if link_shape is not None:
                egress[j] = link_shape
            rate = max(rate, rate_j)
        write_rules(path, old.with_shaping(egress, rate))


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
         to: list[int] | None = None, emulate: bool = False) -> list[int]:
    """Put link profile `profile` on the egress of `nodes` (default all), toward `to` only if
    given (per pair): qdiscs in the kernel on a --netns testnet, else (or with `emulate`) in
    the nodes' transports (`shape`)."""
    m = read_manifest(d)
    every = [x["index"] for x in m["nodes"]]
    chosen = every if not nodes else nodes
    for i in [*chosen, *(to or [])]:
        if i not in every:
            raise LauncherError(f"node {i}: nodes are 0..{len(every) - 1}")
    if profile not in ns.PROFILES:
        raise LauncherError(f"unknown link profile {profile!r}; profiles: "
                            f"{', '.join(ns.PROFILES)}")
    if to and ("geo" in ns.PROFILES[profile] or profile == "clear"):
        raise LauncherError(f"link profile {profile!r} is for whole nodes (no --to)")
    if m.get("netns") and not emulate:
        ns.apply_link(ns.Plan.from_dict(m["netns"]), profile, chosen, to)
        where = "kernel"
        if profile == "clear":  # and any emulated profile
            shape(d, profile, chosen)
    else:
        shape(d, profile, chosen, to)
        where = "transport"
    shaped = m.setdefault("links", {})
    for i in chosen:
        if profile == "clear":
            shaped.pop(str(i), None)
        else:
            shaped[str(i)] = (f"{profile} to {sorted(to)}" if to else profile) + f" ({where})"
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
    p.add_argument("--emulate", action="store_true",
                   help="shape in the nodes' transports even on a --netns testnet (the only "
                        "way on a testnet without --netns, or on a kernel without netem)")


def run_link(args: argparse.Namespace) -> int:
    try:
        nodes = link(args.dir, args.profile, args.node, args.to, args.emulate)
    except (LauncherError, ns.NetnsError, OSError) as exc:
        print(f"link: {exc}", file=sys.stderr)
        return 2
    to = f" toward {args.to}" if args.to else ""
    print(f"link profile {args.profile} on nodes {nodes}{to}")
    return 0
