"""State certificates on a real 4-process testnet (libp2p, LevelDB, authenticated_state on):
after some puts, every node's `block` answer at each height carries the same state_root and
results_root and a state certificate of 2f+1 valid signatures by genesis validators."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bftnode.client import Client
from bftnode.genesis import load_genesis
from consensus import Authenticator, Ed25519Verifier, StateVote
from testnet.ports import free_port_base

pytestmark = pytest.mark.integration


def _rpc(url: str, method: str, params: dict) -> dict:
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                   timeout=10)
    body = r.json()
    assert "error" not in body, body
    return body["result"]


def _check_certificate(auth: Authenticator, quorum: int, blk: dict) -> None:
    cert = blk["state_certificate"]
    assert cert["height"] == blk["height"] and cert["block_hash"] == blk["hash"]
    assert (cert["state_root"], cert["results_root"]) == (blk["state_root"], blk["results_root"])
    signers = set()
    for s in cert["certificate"]:
        vote = StateVote(blk["height"], bytes.fromhex(blk["hash"]),
                         bytes.fromhex(blk["state_root"]), bytes.fromhex(blk["results_root"]),
                         s["replica"], bytes.fromhex(s["sig"]))
        assert auth.verify(vote), f"bad signature of validator {s['replica']}"
        signers.add(s["replica"])
    assert len(signers) == len(cert["certificate"]) == quorum


def test_every_node_serves_the_same_certified_roots_at_every_height(tmp_path):
    from testnet import launcher

    d = tmp_path / "net"
    m = launcher.up(d, 4, open_chain=True, base_port=free_port_base(8), log_level="warning",
                    authenticated_state=True)
    try:
        urls = [n["rpc"] for n in m["nodes"]]
        genesis = load_genesis(Path(m["nodes"][0]["home"]) / "genesis.json")
        auth = Authenticator(genesis.domain, None, Ed25519Verifier(), genesis.replica_keys())
        quorum = 2 * ((len(urls) - 1) // 3) + 1
        with Client(urls, tmp_path / "c.key") as c:
            top = max(c.put(f"roots/{i}", f"v{i}")["height"] for i in range(6))
        deadline = time.monotonic() + 30
        while True:  # a height is certified one vote round after it is stored everywhere
            blocks = {u: [_rpc(u, "block", {"height": h}) for h in range(1, top + 1)]
                      for u in urls}
            if all(b["state_certificate"] for bs in blocks.values() for b in bs):
                break
            assert time.monotonic() < deadline, "heights still uncertified after 30 s"
            time.sleep(0.2)
        for h in range(1, top + 1):
            answers = [blocks[u][h - 1] for u in urls]
            roots = {(b["hash"], b["state_root"], b["results_root"]) for b in answers}
            assert len(roots) == 1, f"nodes disagree on the roots of block {h}: {roots}"
            assert answers[0]["state_root"] != "00" * 32
            for b in answers:
                _check_certificate(auth, quorum, b)
        # the state root changes with the state: the puts' blocks differ from their parents
        put_heights = [h for h in range(2, top + 1) if blocks[urls[0]][h - 1]["num_txs"]]
        for h in put_heights:
            assert blocks[urls[0]][h - 1]["state_root"] != blocks[urls[0]][h - 2]["state_root"]
    finally:
        launcher.down(d)
