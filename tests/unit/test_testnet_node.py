"""`python -m testnet node`: a testnet node's adversary (its home's adversary.json plus the
flags) reaches it only through build_node's seams (`replica_factory`, `wrap_transport`)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from bftnode.home import create_local_chain
from testnet.adversary import ByzantineReplica
from testnet.adversary.link_faults import FaultyTransport
from testnet.adversary.node import (
    Adversary,
    adversary_of,
    node_factory,
    read_adversary,
    write_adversary,
)

ROOT = Path(__file__).resolve().parents[2]


def _testnet(*args):
    return subprocess.run([sys.executable, "-m", "testnet", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_strategies_come_from_the_home_file_then_the_flags(tmp_path):
    assert read_adversary(tmp_path) == Adversary()  # no file: honest, no link faults
    write_adversary(tmp_path, Adversary(("silent-primary",), "link-faults.json"))
    assert read_adversary(tmp_path) == Adversary(("silent-primary",), "link-faults.json")
    args = argparse.Namespace(home=tmp_path, byzantine=["fake-view-change,crash-after:5"],
                              link_faults=None)
    assert adversary_of(args) == Adversary(
        ("silent-primary", "fake-view-change", "crash-after:5"), "link-faults.json")
    args.link_faults = "other.json"
    assert adversary_of(args).link_faults_file == str(Path("other.json").resolve())


def test_a_bad_strategy_is_a_usage_error_naming_it(tmp_path):
    r = _testnet("node", "--home", tmp_path, "--byzantine", "nonsense")
    assert r.returncode == 2
    assert "testnet node:" in r.stderr and "unknown byzantine strategy 'nonsense'" in r.stderr
    (tmp_path / "adversary.json").write_text('{"byzantine": ["crash-after"]}')
    r = _testnet("node", "--home", tmp_path)
    assert r.returncode == 2
    assert "adversary.json" in r.stderr and "crash-after needs a parameter" in r.stderr


def test_the_seams_wrap_the_replica_and_the_transport(tmp_path):
    from tests.integration.node.conftest import free_port_base

    cfg = create_local_chain(tmp_path, 4, base_port=free_port_base(8))[2]
    cfg = dataclasses.replace(cfg, rpc_port=0)
    node = node_factory(Adversary(("silent",), "link-faults.json"))(cfg)
    try:
        assert isinstance(node.replica, ByzantineReplica)
        assert [repr(s) for s in node.replica.strategies] == ["silent"]
        assert node.replica.replica_id == 2 and node.replica.view == 0
        assert isinstance(node.transport, FaultyTransport)
        assert node.transport.rules_file == cfg.home / "link-faults.json"
        assert type(node.transport.inner).__name__ == "Libp2pTransport"
    finally:
        node.store.close()
    honest = node_factory(Adversary())(cfg)
    try:
        assert type(honest.replica).__name__ == "Replica"
        assert type(honest.transport).__name__ == "Libp2pTransport"
    finally:
        honest.store.close()
