"""`python -m testnet up --netns` on real processes in real network namespaces: the README tour
(put, get, kill the primary, restart, down) with each node on its own address; a kernel
partition stops a TCP connect between two namespaces and heal restores it; `down` after a
SIGKILLed launcher removes every namespace, veth and the bridge. Needs root and `ip netns`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testnet import launcher, netns

ROOT = Path(__file__).resolve().parents[3]


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(netns.unusable() is not None, reason=str(netns.unusable()))]

CONSENSUS = ["--consensus", "timeout_request_ms=1000", "--consensus", "timeout_view_change_ms=1000",
             "--consensus", "heartbeat_ms=200"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def tn(*args, check=True, timeout=120):
    r = subprocess.run([sys.executable, "-m", "testnet", *map(str, args)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def client(url, *args, timeout=60, genesis=None):
    pin = ["--genesis", str(genesis)] if genesis else ["--trust-node"]
    r = subprocess.run([sys.executable, "-m", "bftnode", "client", "--rpc", url, *pin, *args],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def status(url):
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "status", "params": {}},
                   timeout=3)
    return r.json()["result"]


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return value


def connect(ns: str, addr: str, port: int) -> str:
    """'ok' or the error of one TCP connect from namespace `ns` (1 s budget)."""
    code = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1],int(sys.argv[2])),"
            "timeout=1).close(); print('ok')\nexcept OSError as e: print(type(e).__name__, e)")
    r = subprocess.run([*netns.exec_prefix(ns), sys.executable, "-c", code, addr, str(port)],
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip() or r.stderr.strip()


def assert_clean(tid: str) -> None:
    assert netns.leftovers(tid) == ([], [])


@pytest.fixture
def net(tmp_path):
    d = tmp_path / "tn"
    try:
        tn("up", "--netns", "--detach", "--open", "--dir", d, "--log-level", "warning",
           "--authenticated-state", *CONSENSUS)
        m = json.loads((d / "testnet.json").read_text())
        yield d, m
    finally:
        tn("down", "--dir", d, check=False)
        assert_clean(netns.testnet_id(d))


def test_the_tour_on_netns_each_node_on_its_own_address(net):
    d, m = net
    plan = netns.Plan.from_dict(m["netns"])
    hosts = [n["rpc"].split("//")[1].split(":")[0] for n in m["nodes"]]
    assert hosts == [plan.addr(i) for i in range(4)] and len(set(hosts)) == 4
    assert all(h.startswith("10.77.") for h in hosts)
    for i, n in enumerate(m["nodes"]):
        assert n["p2p"].startswith(f"/ip4/{hosts[i]}/tcp/")
        # the node's process runs inside its own namespace
        assert n["pid"] in netns.pids_in(plan.ns(i))
    urls = [n["rpc"] for n in m["nodes"]]
    assert client(urls[0], "put", "greeting", "hello").startswith("OK")
    # verified against the genesis the testnet leaves for clients
    assert "hello" in client(urls[1], "get", "greeting", genesis=d / "genesis.json")

    primary = status(urls[1])["primary"]
    tn("kill", "--node", primary, "--hard", "--dir", d)
    other = urls[(primary + 1) % 4]
    assert client(other, "put", "after-kill", "yes").startswith("OK")
    h = status(other)["height"]
    tn("restart", "--node", primary, "--dir", d)
    wait_until(lambda: status(urls[primary])["height"] >= h, 30, f"node {primary} at {h}")
    assert status(urls[primary])["view"] >= 1
    st = json.loads(tn("status", "--dir", d, "--json").stdout)
    assert [r["alive"] for r in st["nodes"]] == [True] * 4

    tn("down", "--dir", d)
    assert_clean(plan.tid)


def test_a_kernel_partition_stops_tcp_between_namespaces_and_heal_restores_it(net):
    d, m = net
    plan = netns.Plan.from_dict(m["netns"])
    port2 = int(m["nodes"][2]["p2p"].split("/")[4])
    port1 = int(m["nodes"][1]["p2p"].split("/")[4])
    assert connect(plan.ns(1), plan.addr(2), port2) == "ok"

    tn("partition", "--dir", d, "--from", 1, "--to", 2, "--one-way")
    assert connect(plan.ns(1), plan.addr(2), port2).startswith("PermissionError")  # refused
    # one-way: 2's SYN reaches 1, 1's SYN-ACK cannot leave
    assert connect(plan.ns(2), plan.addr(1), port1).startswith("TimeoutError")
    assert connect(plan.ns(0), plan.addr(2), port2) == "ok"  # other links untouched
    assert json.loads((d / "testnet.json").read_text())["cuts"] == [[1, 2]]

    tn("heal", "--dir", d)
    assert connect(plan.ns(1), plan.addr(2), port2) == "ok"
    assert connect(plan.ns(2), plan.addr(1), port1) == "ok"

    # an isolated node: nobody reaches it and the rest still commit; after heal it catches up
    tn("partition", "--dir", d, "--isolate", 3)
    port3 = int(m["nodes"][3]["p2p"].split("/")[4])
    assert connect(plan.ns(0), plan.addr(3), port3).startswith("PermissionError")
    urls = [n["rpc"] for n in m["nodes"]]
    assert client(urls[0], "put", "while-cut", "x").startswith("OK")
    h = status(urls[0])["height"]
    assert status(urls[3])["height"] < h  # the RPC from the root namespace still reaches it
    tn("heal", "--dir", d)
    wait_until(lambda: status(urls[3])["height"] >= h, 30, "node 3 to catch up after heal")


def test_down_after_a_killed_launcher_removes_namespaces_bridge_and_nodes(tmp_path):
    d = tmp_path / "crash"
    tid = netns.testnet_id(d)
    launcher_proc = subprocess.Popen(
        [sys.executable, "-m", "testnet", "up", "--netns", "--dir", str(d), "--nodes", "4",
         "--log-level", "warning"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        assert "4 nodes up" in launcher_proc.stdout.readline()
        pids = [n["pid"] for n in json.loads((d / "testnet.json").read_text())["nodes"]]
        launcher_proc.send_signal(signal.SIGKILL)
        launcher_proc.wait(10)
        assert netns.leftovers(tid)[0]  # the crash left the namespaces ...
        assert all(launcher.pid_alive(p) for p in pids)  # ... and the nodes running
        (d / "testnet.json").unlink()  # even the manifest is gone: found by name
        r = tn("down", "--dir", d)
        assert "removed what a crashed run left" in r.stdout
        assert_clean(tid)
        wait_until(lambda: not any(launcher.pid_alive(p) for p in pids), 10,
                   "the nodes to be gone")
    finally:
        if launcher_proc.poll() is None:
            launcher_proc.kill()
        netns.cleanup(tid)


SINK = ("import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind((sys.argv[1],45000)); s.listen(); print('ready',flush=True)\n"
        "while True:\n c,_=s.accept()\n while c.recv(65536): pass\n c.close()")
SEND = ("import socket,sys,time\nt=time.monotonic(); c=socket.create_connection((sys.argv[1],45000))\n"
        "c.sendall(b'x'*int(sys.argv[2])); c.shutdown(socket.SHUT_WR); c.recv(1); c.close()\n"
        "print(time.monotonic()-t)")


def test_link_profiles_a_tbf_rate_applies_per_pair_and_netem_says_if_the_kernel_lacks_it(
        tmp_path):
    plan = netns.make_plan(tmp_path, 3, netns.used_octets())
    sink = None
    try:
        netns.setup(plan)
        sink = subprocess.Popen([*netns.exec_prefix(plan.ns(2)), sys.executable, "-c", SINK,
                                 plan.addr(2)], stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().strip() == "ready"

        def send_s(src: int, nbytes: int) -> float:
            r = subprocess.run([*netns.exec_prefix(plan.ns(src)), sys.executable, "-c", SEND,
                                plan.addr(2), str(nbytes)], capture_output=True, text=True,
                               timeout=30)
            return float(r.stdout)

        netns.apply_link(plan, "slow", [0], to=[2])  # 10 Mbit/s from node 0 to node 2 only
        shaped, free = send_s(0, 1_250_000), send_s(1, 1_250_000)  # 10 Mbit
        assert shaped > 0.7 and free < 0.3, (shaped, free)
        netns.apply_link(plan, "clear", [0])
        assert send_s(0, 1_250_000) < 0.3
        if "unknown" in netns.run(["tc", "-n", plan.ns(0), "qdisc", "add", "dev", "eth0",
                                   "root", "netem", "delay", "1ms"], check=False).stderr.lower():
            with pytest.raises(netns.NetnsError, match="blocked on this kernel: no sch_netem"):
                netns.apply_link(plan, "wan", [0, 1])
            assert "netem" not in netns.run(["tc", "-n", plan.ns(0), "qdisc", "show"]).stdout
        else:
            netns.apply_link(plan, "wan", [0])
            assert "delay 50ms" in netns.run(["tc", "-n", plan.ns(0), "qdisc", "show"]).stdout
    finally:
        if sink is not None:
            sink.kill()
            sink.wait()
        netns.cleanup(plan.tid)
    assert_clean(plan.tid)
