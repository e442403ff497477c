"""A real 4-node testnet (separate `bftnode start` processes, libp2p on 127.0.0.1, LevelDB)
started with the launcher: a put commits and every node reports the same height and block
hashes; a hard-killed primary is replaced by a view change and commits resume; a killed backup
restarted later catches up."""

from __future__ import annotations

import base64
import contextlib
import itertools
import time

import httpx
import pytest

from bftnode.app import ops
from consensus import Ed25519Signer, Request, encode, sign_request
from testnet import launcher

from .conftest import free_port_base

pytestmark = pytest.mark.integration

_seq = itertools.count(1)
_client = Ed25519Signer(b"\x42" * 32)


def call(url, method, params=None, timeout=10.0):
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                              "params": params or {}}, timeout=timeout)
    body = r.json()
    assert "error" not in body, body
    return body["result"]


def put(m, node, key, value, timeout=60.0):
    req = sign_request(m["chain_id"].encode(), _client,
                       Request(client_id=b"", request_seq=next(_seq), op=ops.put(key, value)))
    tx = base64.b64encode(encode(req)).decode()
    return call(m["nodes"][node]["rpc"], "broadcast_tx_commit", {"tx": tx, "timeout": timeout},
                timeout=timeout + 5)


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def statuses(m, nodes):
    return {i: call(m["nodes"][i]["rpc"], "status", timeout=3) for i in nodes}


def same_chain(m, nodes, height):
    """Equal block hashes at `height` (each hash chains the previous one) and equal prev_hash
    links at a few sampled heights."""
    sample = sorted({1, height // 2 or 1, height})
    seen = {i: tuple((call(m["nodes"][i]["rpc"], "block", {"height": h})["hash"],
                      call(m["nodes"][i]["rpc"], "block", {"height": h})["prev_hash"])
                     for h in sample) for i in nodes}
    return len(set(seen.values())) == 1


@pytest.fixture(scope="module")
def testnet(tmp_path_factory):
    d = tmp_path_factory.mktemp("tn")
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8),
                    consensus={"timeout_request_ms": 1000, "timeout_view_change_ms": 1000,
                               "heartbeat_ms": 200})
    try:
        yield d, m
    finally:
        launcher.down(d)


def test_a_put_commits_and_all_nodes_agree_on_height_and_block_hashes(testnet):
    d, m = testnet
    res = put(m, 1, b"hello", b"world")
    assert res["code"] == 0
    h = res["height"]

    def all_at_h():
        st = statuses(m, range(4))
        return all(s["height"] >= h for s in st.values())

    wait_until(all_at_h, 20, f"all nodes at height {h}")
    assert same_chain(m, range(4), h)
    for i in range(4):
        assert call(m["nodes"][i]["rpc"], "kv_get", {"key": "hello"})["value"] == "world"


def test_sigusr1_writes_a_memory_report_and_the_node_keeps_committing(testnet):
    import os
    import signal
    from pathlib import Path

    d, m = testnet
    node = m["nodes"][2]
    home = Path(node["home"])
    before = set(home.glob("memory-*.txt"))
    os.kill(node["pid"], signal.SIGUSR1)
    reports = wait_until(lambda: set(home.glob("memory-*.txt")) - before, 20, "a memory report")
    text = next(iter(reports)).read_text()
    assert text.startswith("rss_mb ") and "gc_objects" in text and "replica._pending" in text
    assert put(m, 2, b"after-report", b"ok")["code"] == 0  # still a working validator


def test_hard_killed_primary_is_replaced_and_commits_resume(testnet):
    d, m = testnet
    st = statuses(m, range(4))
    primary = st[0]["primary"]
    view0 = st[0]["view"]
    others = [i for i in range(4) if i != primary]
    launcher.kill(d, primary, hard=True)
    t0 = time.monotonic()
    res = put(m, others[0], b"after-kill", b"v")
    elapsed = time.monotonic() - t0
    print(f"\nprimary {primary} SIGKILLed: first commit after {elapsed:.2f}s "
          f"(view change + commit), height {res['height']}")
    assert res["code"] == 0
    st = statuses(m, others)
    assert all(s["view"] > view0 and s["primary"] != primary for s in st.values())
    assert elapsed < 30
    # the old primary comes back and catches up (also as a backup now)
    launcher.restart(d, primary)
    h = res["height"]
    wait_until(lambda: statuses(m, [primary])[primary]["height"] >= h, 30,
               f"restarted node {primary} to reach height {h}")
    assert same_chain(m, range(4), h)


def test_killed_backup_restarted_catches_up(testnet):
    d, m = testnet
    primary = statuses(m, [0])[0]["primary"]
    backup = (primary + 2) % 4
    launcher.kill(d, backup)
    live = [i for i in range(4) if i != backup]
    last = None
    for k in range(6):  # heartbeats (200 ms) also move the chain past checkpoints meanwhile
        last = put(m, live[k % 3], f"gap{k}".encode(), b"x")
        assert last["code"] == 0
    h = last["height"]
    t0 = time.monotonic()
    launcher.restart(d, backup)
    wait_until(lambda: statuses(m, [backup])[backup]["height"] >= h, 60,
               f"restarted backup {backup} to reach height {h}")
    print(f"\nbackup {backup} restarted: caught up {h} blocks in {time.monotonic() - t0:.2f}s")
    assert same_chain(m, range(4), h)
    assert call(m["nodes"][backup]["rpc"], "kv_get", {"key": "gap5"})["value"] == "x"


def test_cli_status_and_logs_then_up_again_restarts_the_same_chain(testnet):
    import json
    import subprocess
    import sys

    d, m = testnet
    run = lambda *a: subprocess.run([sys.executable, "-m", "testnet", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    r = run("status", "--dir", d, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["chain_id"] == m["chain_id"] and all(n["alive"] for n in st["nodes"])
    assert {n["node_id"] for n in st["nodes"]} == {n["node_id"] for n in m["nodes"]}
    r = run("logs", "--dir", d, "--node", 1, "--lines", 5)
    assert r.returncode == 0 and r.stdout.strip()
    before = max(n["height"] for n in st["nodes"])
    launcher.down(d)
    # same DIR: same keys, genesis and ledgers; a config override reaches every node
    m2 = launcher.up(d, 4, open_chain=True, max_open_files=80)
    assert m2["chain_id"] == m["chain_id"] and m2["genesis_hash"] == m["genesis_hash"]
    from bftnode.config import load_config
    assert {load_config(n["home"]).max_open_files for n in m2["nodes"]} == {80}
    assert min(s["height"] for s in statuses(m2, range(4)).values()) >= before
    res = put(m2, 2, b"again", b"1")
    assert res["code"] == 0 and res["height"] > before


def test_a_byzantine_node_runs_at_a_lower_cpu_priority(tmp_path, monkeypatch):
    import os
    import signal

    monkeypatch.delenv("BFTNODE_BYZANTINE_NICE", raising=False)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    got = {}
    for name, byz in (("honest", []), ("byzantine", ["silent"])):
        node = {"home": str(tmp_path / name), "log": str(tmp_path / f"{name}.log"),
                "byzantine": byz}
        pid = launcher.start_node_process(node)  # no home: the process exits on its own
        try:
            got[name] = os.getpriority(os.PRIO_PROCESS, pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert got == {"honest": ours, "byzantine": min(19, ours + launcher.BYZANTINE_NICE)}
