"""`bftnode testnet-files` (bftnode.deploy): homes for validators on separate hosts. The
refusals are checked directly; the homes are then run as they would be on four machines, here
four loopback addresses 127.0.0.1-4 with the SAME ports on each: four `bftnode start --home`
processes, a put by the chain's admin key (the only writer on a new chain), and the same block
hash on every node."""

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

from bftnode import cli
from bftnode.client import Client
from bftnode.client.verify import chain_from_genesis
from bftnode.config import load_config
from bftnode.home import multiaddr
from testnet.ports import free_port_base

pytestmark = [pytest.mark.integration]
HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]


def test_refusals_name_the_problem(tmp_path, capsys):
    def run(*argv):
        return cli.main(["testnet-files", "--out", str(tmp_path / "x"), *argv])

    assert run("--hosts", "10.0.0.1,10.0.0.2,10.0.0.3") == 2
    assert "at least 4 validators" in capsys.readouterr().err
    assert run("--hosts", "10.0.0.1,node_2!,10.0.0.3,10.0.0.4") == 2
    assert "'node_2!' is neither an IP address nor a DNS name" in capsys.readouterr().err
    assert run("--hosts", "10.0.0.1,10.0.0.1,10.0.0.3,10.0.0.4") == 2
    assert "hosts repeat" in capsys.readouterr().err
    assert not (tmp_path / "x" / "node0").exists()
    assert multiaddr("fd00::4", 26656) == "/ip6/fd00::4/tcp/26656"
    assert run("--hosts", "10.0.0.1,10.0.0.2,10.0.0.3,fd00::4", "--json") == 0
    m = json.loads(capsys.readouterr().out)
    assert [n["p2p"] for n in m["nodes"]][3] == "/ip6/fd00::4/tcp/26656"
    assert load_config(m["nodes"][0]["home"]).rpc_host == "127.0.0.1"  # not public by default
    assert run("--hosts", "10.0.0.5,10.0.0.6,10.0.0.7,10.0.0.8") == 2  # never overwrites
    assert "already holds homes" in capsys.readouterr().err
    # validators named by DNS (Kubernetes pods): dialled by name, listening on every address
    assert run("--hosts", ",".join(f"bft-{i}.bft" for i in range(4)), "--out",
               str(tmp_path / "named"), "--json") == 0
    m = json.loads(capsys.readouterr().out)
    genesis = json.loads(Path(m["genesis"]).read_text())
    assert [v["p2p_multiaddr"] for v in genesis["validators"]] == [
        f"/dns/bft-{i}.bft/tcp/26656" for i in range(4)]
    assert load_config(m["nodes"][2]["home"]).p2p_listen == "/ip4/0.0.0.0/tcp/26656"


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = cond()
            if got:
                return got
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_homes_for_four_hosts_run_a_chain(tmp_path, capsys):
    base = free_port_base(2)
    out = tmp_path / "deploy"
    assert cli.main(["testnet-files", "--hosts", ",".join(HOSTS), "--out", str(out),
                     "--p2p-port", str(base), "--rpc-port", str(base + 1), "--rpc-public",
                     "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    for i, n in enumerate(m["nodes"]):
        cfg = load_config(n["home"])
        assert cfg.p2p_listen == f"/ip4/{HOSTS[i]}/tcp/{base}" and cfg.rpc_host == HOSTS[i]
        assert not any(Path(p).is_absolute() for p in (cfg.key_file, cfg.genesis_file,
                                                       cfg.data_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFTNODE_")}
    procs = []
    try:
        for n in m["nodes"]:
            log = open(Path(n["home"]) / "node.log", "w")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen(
                [sys.executable, "-m", "bftnode", "start", "--home", n["home"]], stdout=log,
                stderr=subprocess.STDOUT, env=env, cwd=tmp_path), log))
        urls = [n["rpc"] for n in m["nodes"]]
        for u in urls:
            _wait(lambda u=u: httpx.get(u + "/health", timeout=2).status_code == 200, 60,
                  f"{u} healthy")
        # commits checked against the validator set the generated genesis pins (the tree is
        # off on these homes, so there are no read proofs to ask for)
        with Client(urls, m["admin_key"], chain=chain_from_genesis(m["genesis"])) as c:
            res = c.put("deployed", "yes")
            height = res["height"]
            assert c.get("deployed", min_revision=res["result"]["revision"])["value"] == "yes"

        def block_hash(u: str) -> str | None:
            r = httpx.post(u, json={"jsonrpc": "2.0", "id": 1, "method": "block",
                                    "params": {"height": height}}, timeout=5).json()
            return r.get("result", {}).get("hash")

        hashes = {u: _wait(lambda u=u: block_hash(u), 30, f"block {height} on {u}")
                  for u in urls}
        assert len(set(hashes.values())) == 1, hashes
    finally:
        for p, _log in procs:
            p.send_signal(signal.SIGTERM)
        for p, log in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
            log.close()
