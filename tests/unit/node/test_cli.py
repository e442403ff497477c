"""`bftnode` CLI as a real process: keygen, init, and every start-up problem gives a clear
message, exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def bftnode(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "bftnode", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _free_base(count=8):
    from tests.integration.node.conftest import free_port_base

    return free_port_base(count)


def _tree(p: Path) -> set[str]:
    return {str(x.relative_to(p)) for x in p.rglob("*")}


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(tmp_path):
    r = bftnode("keygen", "--out", tmp_path / "k.json", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["public_key"]) == 64
    assert stat.S_IMODE(os.stat(tmp_path / "k.json").st_mode) == 0o600
    r = bftnode("keygen", "--out", tmp_path / "k.json")
    assert r.returncode == 2 and "already exists" in r.stderr


def test_init_local_chain_then_join_from_its_genesis(tmp_path):
    base = _free_base()
    r = bftnode("init", "--home", tmp_path / "chain", "--validators", 4, "--base-port", base,
                "--chain-id", "cli-test", "--json")
    assert r.returncode == 0, r.stderr
    nodes = json.loads(r.stdout)["nodes"]
    assert [n["index"] for n in nodes] == [0, 1, 2, 3]
    assert nodes[1]["rpc"] == f"http://127.0.0.1:{base + 3}"
    for i in range(4):
        assert (tmp_path / "chain" / f"node{i}" / "config.toml").exists()
    # a second home for validator 2 of that chain, with validator 2's key
    g = tmp_path / "chain" / "node0" / "genesis.json"
    k2 = tmp_path / "chain" / "node2" / "node_key.json"
    r = bftnode("init", "--home", tmp_path / "other", "--genesis", g, "--index", 2, "--key", k2)
    assert r.returncode == 0, r.stderr
    # ... and the wrong key is refused
    r = bftnode("init", "--home", tmp_path / "bad", "--genesis", g, "--index", 1, "--key", k2)
    assert r.returncode == 2 and "is not validator 1" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_init_refuses_a_chain_pbft_cannot_run(tmp_path):
    r = bftnode("init", "--home", tmp_path / "c", "--validators", 1)
    assert r.returncode == 2 and "3f+1" in r.stderr


@pytest.fixture
def chain(tmp_path):
    base = _free_base()
    r = bftnode("init", "--home", tmp_path, "--validators", 4, "--base-port", base,
                "--chain-id", "start-test")
    assert r.returncode == 0, r.stderr
    return tmp_path, base


def test_start_with_a_bad_config_field_names_it(chain):
    root, _ = chain
    cfg = root / "node0" / "config.toml"
    cfg.write_text(cfg.read_text().replace('rpc_host = "127.0.0.1"', "rpc_host = 5"))
    before = _tree(root / "node0")
    r = bftnode("start", "--home", root / "node0")
    assert r.returncode == 2
    assert "rpc_host" in r.stderr and "config.toml" in r.stderr
    assert _tree(root / "node0") == before


def test_start_with_the_wrong_genesis_refuses(chain):
    root, _ = chain
    g = json.loads((root / "node1" / "genesis.json").read_text())
    g["chain_id"] = "another-chain"
    (root / "node1" / "genesis.json").write_text(json.dumps(g))
    before = _tree(root / "node1")
    r = bftnode("start", "--home", root / "node1")
    assert r.returncode == 2 and "wrong genesis" in r.stderr
    assert _tree(root / "node1") == before


def test_start_with_a_key_not_in_genesis_refuses(chain):
    root, _ = chain
    os.remove(root / "node1" / "node_key.json")
    assert bftnode("keygen", "--out", root / "node1" / "node_key.json").returncode == 0
    r = bftnode("start", "--home", root / "node1")
    assert r.returncode == 2 and "is not validator 1" in r.stderr


@pytest.mark.parametrize("which", ["p2p", "rpc"])
def test_start_with_a_port_in_use_refuses_and_writes_nothing(chain, which):
    root, base = chain
    port = base + 4 + (0 if which == "p2p" else 1)  # node2
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        before = _tree(root / "node2")
        r = bftnode("start", "--home", root / "node2")
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "not available" in r.stderr
    assert _tree(root / "node2") == before  # no data dir created


def test_start_with_a_locked_database_refuses(chain):
    import storage

    root, _ = chain
    from bftnode.config import load_config
    from bftnode.genesis import load_genesis

    cfg = load_config(root / "node3")
    g = load_genesis(cfg.genesis_path)
    store = storage.open_store(str(cfg.data_path), g.chain_id.encode(), g.hash(), True)
    try:
        r = bftnode("start", "--home", root / "node3")
    finally:
        store.close()
    assert r.returncode == 2
    assert "lock" in r.stderr.lower() and str(cfg.data_path) in r.stderr


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_start_then_signal_shuts_down_cleanly_and_releases_the_database(chain, sig):
    import signal
    import time

    root, _ = chain
    log = root / "node0.log"
    with open(log, "wb") as fh:
        p = subprocess.Popen([sys.executable, "-m", "bftnode", "start", "--home", root / "node0"],
                             cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b'"event": "ready"' not in log.read_bytes():
            assert p.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "node did not become ready"
            time.sleep(0.05)
        p.send_signal(getattr(signal, sig))
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert "shutting down" in text and "node stopped" in text
    import storage
    from bftnode.config import load_config
    from bftnode.genesis import load_genesis

    cfg = load_config(root / "node0")
    g = load_genesis(cfg.genesis_path)
    storage.open_store(str(cfg.data_path), g.chain_id.encode(), g.hash(), False).close()
