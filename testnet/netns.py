"""Network namespaces for `python -m testnet up --netns`: each node on its own address.

Layout of one testnet (id = 6 hex digits of sha256 of its directory, so `down` finds what a
crashed run left even without a manifest): bridge `bft<id>br` in the root namespace with
10.77.<k>.254/24; node i in namespace `bft-<id>-<i>` with `eth0` = 10.77.<k>.<i+1>/24, the
peer end `bft<id>v<i>` enslaved to the bridge. Namespaces get no default route: their
addresses reach only each other and the root namespace (clients, CLI, launcher).

Kernel faults: a cut from i to j is a `prohibit` route to j's address inside i's namespace
(i's packets to j are refused at once; TCP in either direction stalls, since one side's
segments never leave). Link profiles are qdiscs on each node's `eth0` (egress): netem for
delay/loss/reordering, tbf for a rate limit. Builders are pure (lists of argv); `run` executes.
Imports: stdlib only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

SUBNET = "10.77"
HOST_OCTET = 254
MAX_NODES = 253
NO_NETEM = "blocked on this kernel: no sch_netem (tc says 'Specified qdisc kind is unknown')"


class NetnsError(Exception):
    """A namespace operation cannot proceed; callers exit with code 2."""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Names and addresses of one testnet's namespaces."""

    tid: str
    octet: int
    n: int

    @property
    def bridge(self) -> str:
        return f"bft{self.tid}br"

    @property
    def host_addr(self) -> str:
        return f"{SUBNET}.{self.octet}.{HOST_OCTET}"

    @property
    def subnet(self) -> str:
        return f"{SUBNET}.{self.octet}.0/24"

    def ns(self, i: int) -> str:
        return f"{ns_prefix(self.tid)}{i}"

    def veth(self, i: int) -> str:
        return f"bft{self.tid}v{i}"

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{self.octet}.{i + 1}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.tid, "octet": self.octet, "n": self.n, "bridge": self.bridge,
                "subnet": self.subnet, "host_addr": self.host_addr,
                "namespaces": [self.ns(i) for i in range(self.n)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(str(d["id"]), int(d["octet"]), int(d["n"]))


def testnet_id(d: str | os.PathLike) -> str:
    return hashlib.sha256(str(Path(d).resolve()).encode()).hexdigest()[:6]


def ns_prefix(tid: str) -> str:
    return f"bft-{tid}-"


def make_plan(d: str | os.PathLike, n: int, used_octets: set[int]) -> Plan:
    """A plan for `n` nodes whose /24 is not in `used_octets` (subnets already on this host)."""
    if not 1 <= n <= MAX_NODES:
        raise NetnsError(f"--netns: 1..{MAX_NODES} nodes, got {n}")
    tid = testnet_id(d)
    start = int(tid, 16) % 250
    for k in range(250):
        octet = (start + k) % 250
        if octet not in used_octets:
            return Plan(tid, octet, n)
    raise NetnsError(f"--netns: every {SUBNET}.x.0/24 is in use on this host")


def plan_for(d: str | os.PathLike, n: int, recorded: dict[str, Any] | None) -> Plan:
    """The plan of testnet directory `d`: the one its manifest recorded (same addresses on a
    restart) or a new one. Needs root; removes what a crashed earlier run of `d` left."""
    require_root()
    cleanup(testnet_id(d))
    if recorded:
        plan = Plan.from_dict(recorded)
        if plan.n != n:
            raise NetnsError(f"{d} holds a --netns testnet of {plan.n} nodes, not {n}")
        return plan
    return make_plan(d, n, used_octets())


def check_hosts(d: str | os.PathLike, listens: list[str], plan: Plan | None) -> None:
    """NetnsError unless node i's p2p multiaddr `listens[i]` is on the host this run uses."""
    for i, listen in enumerate(listens):
        host = listen.split("/")[2]
        if plan is not None and host != plan.addr(i) or (
                plan is None and host.startswith(f"{SUBNET}.")):
            how = "with --netns" if plan is None else "without --netns (or with other addresses)"
            raise NetnsError(f"{d} was created {how}: node {i} listens on {listen}; "
                             f"use the same mode or a new --dir")


# ---------------------------------------------------------------- command builders (pure)


def setup_commands(p: Plan) -> list[list[str]]:
    cmds = [["ip", "link", "add", p.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{p.host_addr}/24", "dev", p.bridge],
            ["ip", "link", "set", p.bridge, "up"]]
    for i in range(p.n):
        ns, veth = p.ns(i), p.veth(i)
        cmds += [["ip", "netns", "add", ns],
                 ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                 ["ip", "link", "set", veth, "master", p.bridge],
                 ["ip", "link", "set", veth, "up"],
                 ["ip", "-n", ns, "addr", "add", f"{p.addr(i)}/24", "dev", "eth0"],
                 ["ip", "-n", ns, "link", "set", "eth0", "up"],
                 ["ip", "-n", ns, "link", "set", "lo", "up"]]
    return cmds


def exec_prefix(ns: str) -> list[str]:
    """argv prefix that runs a command inside namespace `ns` (same pid: `ip` execs it)."""
    return ["ip", "netns", "exec", ns]


def cut_commands(p: Plan, src: int, dst: int) -> list[list[str]]:
    """Stop every packet from node `src` to node `dst` (one direction)."""
    return [["ip", "-n", p.ns(src), "route", "replace", "prohibit", f"{p.addr(dst)}/32"]]


def heal_commands(p: Plan) -> list[list[str]]:
    return [["ip", "-n", p.ns(i), "route", "flush", "type", "prohibit"] for i in range(p.n)]


def cuts_for_groups(n: int, groups: list[list[int]]) -> list[tuple[int, int]]:
    """Directed cuts between different groups; a node in no group is cut from every node."""
    side = {i: gi for gi, g in enumerate(groups) for i in g}
    return [(i, j) for i in range(n) for j in range(n)
            if i != j and (i not in side or j not in side or side[i] != side[j])]


# Link profiles: per node, the qdisc on its eth0 (egress; both ends of a pair add theirs, so
# a round trip carries two delays). `geo` puts node i in region i % 3 and gives each pair of
# regions its own one-way delay through htb classes with a netem leaf.
PROFILES: dict[str, dict[str, Any]] = {
    "clear": {"doc": "no shaping (removes the root qdisc)"},
    "lan": {"doc": "0.2 ms +- 0.05 ms", "netem": ["delay", "0.2ms", "0.05ms"]},
    "wan": {"doc": "50 ms +- 10 ms (normal)",
            "netem": ["delay", "50ms", "10ms", "distribution", "normal"]},
    "lossy": {"doc": "5 ms, 1 % loss, 25 % reordered",
              "netem": ["delay", "5ms", "loss", "1%", "reorder", "25%", "50%"]},
    "geo": {"doc": "three regions (node i in region i % 3): 1 ms inside, 30/45/70 ms between",
            "geo": {(0, 1): 30, (0, 2): 70, (1, 2): 45}, "geo_local_ms": 1},
    "slow": {"doc": "rate 10 Mbit/s (tbf, no netem)",
             "tbf": ["rate", "10mbit", "burst", "32kbit", "latency", "400ms"]},
}
GEO_REGIONS = 3
# The same profiles in the nodes' transports (testnet/links.py, where there is no netem or no
# --netns): per link [delay ms, jitter ms, frame loss], and a node egress rate in kbit/s.
EMULATED: dict[str, tuple[tuple[float, float, float], int]] = {
    "lan": ((0.2, 0.05, 0.0), 0),
    "wan": ((50.0, 10.0, 0.0), 0),
    "lossy": ((5.0, 0.0, 0.01), 0),
    "slow": ((0.0, 0.0, 0.0), 10_000),
}


def emulated(name: str, a: int, b: int) -> tuple[tuple[float, float, float] | None, int]:
    """Profile `name` on node a's link to b in the transports: (shape or None, rate kbit/s)."""
    if name == "clear":
        return None, 0
    if "geo" in PROFILES[name]:
        return (float(_geo_ms(PROFILES[name], a, b)), 0.0, 0.0), 0
    shape, rate = EMULATED[name]
    return (shape if any(shape) else None), rate


def _geo_ms(profile: dict[str, Any], a: int, b: int) -> int:
    ra, rb = a % GEO_REGIONS, b % GEO_REGIONS
    if ra == rb:
        return int(profile["geo_local_ms"])
    return int(profile["geo"][(min(ra, rb), max(ra, rb))])


def needs_netem(name: str) -> bool:
    prof = PROFILES[name]
    return "netem" in prof or "geo" in prof


def _leaf(prof: dict[str, Any]) -> list[str]:
    return ["netem", *prof["netem"]] if "netem" in prof else ["tbf", *prof["tbf"]]


def link_commands(p: Plan, name: str, nodes: list[int],
                  to: list[int] | None = None) -> list[list[str]]:
    """tc commands that put profile `name` on the egress of each node in `nodes` (replacing
    its shaping); with `to`, only on its packets to those nodes (an htb class per peer, picked
    by a u32 filter on the destination address; other packets pass unshaped)."""
    if name not in PROFILES:
        raise NetnsError(f"unknown link profile {name!r}; profiles: {', '.join(PROFILES)}")
    prof = PROFILES[name]
    if to and ("geo" in prof or name == "clear"):
        raise NetnsError(f"link profile {name!r} is for whole nodes (no --to)")
    cmds: list[list[str]] = []
    for i in nodes:
        tc = ["tc", "-n", p.ns(i)]
        # start from no qdisc: `del` of a missing root fails, which `apply_link` ignores
        cmds.append([*tc, "qdisc", "del", "dev", "eth0", "root"])
        if name == "clear":
            continue
        if not to and "geo" not in prof:
            cmds.append([*tc, "qdisc", "add", "dev", "eth0", "root", *_leaf(prof)])
            continue
        cmds.append([*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb"])
        for j in (to or range(p.n)):
            if j == i:
                continue
            cls = f"1:{j + 10}"
            leaf = ["netem", "delay", f"{_geo_ms(prof, i, j)}ms"] if "geo" in prof else _leaf(prof)
            cmds += [
                [*tc, "class", "add", "dev", "eth0", "parent", "1:", "classid", cls,
                 "htb", "rate", "10gbit"],
                [*tc, "qdisc", "add", "dev", "eth0", "parent", cls, *leaf],
                [*tc, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip",
                 "u32", "match", "ip", "dst", f"{p.addr(j)}/32", "flowid", cls]]
    return cmds


# ---------------------------------------------------------------- runner


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise NetnsError(f"`{' '.join(cmd)}` failed: {r.stderr.strip() or r.returncode}")
    return r


def require_root() -> None:
    """NetnsError unless this process can create namespaces (root with `ip` and `tc`)."""
    if os.geteuid() != 0:
        raise NetnsError("--netns needs root (network namespaces, a bridge and veth pairs); "
                         "run as root or without --netns")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise NetnsError(f"--netns needs the `{tool}` command (iproute2)")


def unusable() -> str | None:
    """Why a `--netns` testnet cannot run here (None: it can): require_root, and `ip netns`
    must work (a kernel or sandbox may refuse namespaces)."""
    try:
        require_root()
    except NetnsError as exc:
        return str(exc)
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work here"
    return None


def used_octets() -> set[int]:
    """Third octets of the 10.77.x.0/24 subnets that have an address in the root namespace."""
    r = run(["ip", "-j", "-4", "addr"], check=False)
    out: set[int] = set()
    try:
        for link in json.loads(r.stdout or "[]"):
            for a in link.get("addr_info", []):
                parts = str(a.get("local", "")).split(".")
                if len(parts) == 4 and ".".join(parts[:2]) == SUBNET:
                    out.add(int(parts[2]))
    except (ValueError, TypeError):
        pass
    return out


def setup(p: Plan) -> None:
    """Create the bridge and namespaces; on a failure, remove what was made and raise."""
    require_root()
    try:
        for cmd in setup_commands(p):
            run(cmd)
    except NetnsError:
        cleanup(p.tid)
        raise


def leftovers(tid: str) -> tuple[list[str], list[str]]:
    """(namespaces, root-namespace links) of testnet `tid` that exist now."""
    nss = []
    r = run(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(ns_prefix(tid)):
            nss.append(name)
    links = []
    r = run(["ip", "-j", "link"], check=False)
    try:
        for link in json.loads(r.stdout or "[]"):
            if str(link.get("ifname", "")).startswith(f"bft{tid}"):
                links.append(link["ifname"])
    except (ValueError, TypeError):
        pass
    return nss, links


def pids_in(ns: str) -> list[int]:
    r = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def cleanup(tid: str) -> tuple[list[str], list[str]]:
    """SIGKILL whatever still runs in testnet `tid`'s namespaces, delete them and its bridge
    and veths; returns what was removed. Only names of this testnet's prefix are touched."""
    nss, links = leftovers(tid)
    if not nss and not links:
        return [], []
    require_root()
    for ns in nss:
        for pid in pids_in(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in nss:
        run(["ip", "netns", "del", ns])
    for link in links:  # veths died with their namespace's end; the bridge remains
        run(["ip", "link", "del", link], check=False)
    deadline = time.monotonic() + 5.0  # a veth goes with its namespace, asynchronously
    while (left := leftovers(tid)) != ([], []):
        if time.monotonic() > deadline:
            raise NetnsError(f"could not remove {left[0] + left[1]}")
        for link in left[1]:
            run(["ip", "link", "del", link], check=False)
        time.sleep(0.05)
    return nss, links


def apply_cuts(p: Plan, cuts: list[tuple[int, int]]) -> None:
    for src, dst in cuts:
        for cmd in cut_commands(p, src, dst):
            run(cmd)


def heal(p: Plan) -> None:
    for cmd in heal_commands(p):
        run(cmd)


def apply_link(p: Plan, name: str, nodes: list[int], to: list[int] | None = None) -> None:
    """Put profile `name` on `nodes` (toward `to` only, if given); NetnsError(NO_NETEM) if the
    kernel lacks netem (then the nodes are left without shaping)."""
    for cmd in link_commands(p, name, nodes, to):
        is_del = cmd[3:5] == ["qdisc", "del"]
        r = run(cmd, check=False)
        if r.returncode == 0 or is_del:
            continue
        if "netem" in cmd and "unknown" in r.stderr.lower():
            for i in nodes:
                run(["tc", "-n", p.ns(i), "qdisc", "del", "dev", "eth0", "root"], check=False)
            raise NetnsError(f"link profile {name!r}: {NO_NETEM}")
        raise NetnsError(f"`{' '.join(cmd)}` failed: {r.stderr.strip() or r.returncode}")
