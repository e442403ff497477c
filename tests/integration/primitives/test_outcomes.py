"""Definitive outcomes (docs/consistency.md "Outcomes") on a real 4-node testnet: every tx the
client signs carries a `valid_until`, so after its node is killed (SIGKILL) right after the
submit, every one of >= 100 txs reaches COMMITTED or EXPIRED through the other nodes within a
bounded time, and every node agrees with that outcome and the ledger. A second, different
content for a pending or committed (client_id, request_seq) is refused at admission with
CONFLICTING_REQUEST, and the first content is unaffected."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from bftnode.app import ops
from bftnode.client import Client, ConflictingRequest
from bftnode.client.core import tx_param
from bftnode.client.sync import rpc_batch
from bftnode.rpc import errors as E
from consensus import Request, request_digest, sign_request
from testnet import launcher

from .conftest import HEARTBEAT_MS, rpc, wait_until

pytestmark = pytest.mark.integration

TXS = 120
STUCK = 20  # of them sent to the node while it is frozen just before its SIGKILL
VALID_BLOCKS = 30  # idle, the heartbeat makes a block every HEARTBEAT_MS: ~9 s to expiry
# expiry after the kill: VALID_BLOCKS heartbeats, plus a view change if the victim was primary
OUTCOME_BOUND_S = VALID_BLOCKS * HEARTBEAT_MS / 1000 + 30


def test_every_tx_ends_committed_or_expired_after_its_node_is_killed(primitives_testnet,
                                                                      urls, tmp_path):
    d = primitives_testnet["dir"]
    wait_until(lambda: all(rpc(u, "status")["height"] > 0 for u in urls), 60, "all nodes up")
    victim = (rpc(urls[0], "status")["primary"] + 1) % len(urls)  # a backup's clients
    others = [u for i, u in enumerate(urls) if i != victim]
    key = tmp_path / "c.key"
    try:
        with Client(urls[victim], key, valid_blocks=VALID_BLOCKS) as c:
            reqs = [c.sign(ops.put(f"out/{os.getpid()}/{i}".encode(), b"v"))
                    for i in range(TXS)]
            top = max(r.valid_until for r in reqs)
            assert all(r.valid_until >= top - 1 for r in reqs)  # one known height, + 30
            handed, stuck = reqs[:TXS - STUCK], reqs[TXS - STUCK:]
            with httpx.Client(timeout=10.0) as http:  # handed over, not waited for
                acks = rpc_batch(http, urls[victim] + "/", [
                    ("broadcast_tx_async", {"tx": tx_param(r)}) for r in handed])
                # the rest reach the node's socket while it is frozen, then it dies: sent,
                # never answered (the client cannot know whether the node took them)
                os.kill(launcher.read_manifest(d)["nodes"][victim]["pid"], signal.SIGSTOP)
                with pytest.raises(httpx.TimeoutException):
                    http.post(urls[victim] + "/", timeout=1.0, json=[
                        {"jsonrpc": "2.0", "id": i, "method": "broadcast_tx_async",
                         "params": {"tx": tx_param(r)}} for i, r in enumerate(stuck)])
            launcher.kill(d, victim, hard=True)
            killed_at = time.monotonic()
        assert all(isinstance(a, dict) for a in acks), acks[:3]

        expiry = {request_digest(r).hex(): r.valid_until for r in reqs}
        outcomes: dict[str, str] = {}
        with Client(urls, key, valid_blocks=VALID_BLOCKS) as c:  # the dead node first too
            for r in reqs:
                left = killed_at + OUTCOME_BOUND_S - time.monotonic()
                st = c.outcome(r, timeout=max(left, 0.1))
                outcomes[request_digest(r).hex()] = st["status"]
            took = time.monotonic() - killed_at
        counts = {s: list(outcomes.values()).count(s) for s in ("COMMITTED", "EXPIRED")}
        print(f"outcomes after killing node {victim}: {counts} in {took:.1f}s")
        assert sum(counts.values()) == TXS and took <= OUTCOME_BOUND_S
        assert all(outcomes[request_digest(r).hex()] == "EXPIRED" for r in stuck)

        # definitive: every surviving node says the same, by hash alone, and the ledger agrees
        wait_until(lambda: min(rpc(u, "status")["height"] for u in others) > top, 30,
                   "every survivor past valid_until")
        for u in others:
            for h, status in outcomes.items():
                st = rpc(u, "tx_status", hash=h, valid_until=expiry[h])
                assert st["status"] == status, (u, h, st, status)
                assert st["committed"] is (status == "COMMITTED")
    finally:
        launcher.restart(d, victim)
        wait_until(lambda: rpc(urls[victim], "status")["height"] > 0, 60, "victim back")


def test_other_content_for_a_used_request_seq_is_refused_at_admission(urls, tmp_path):
    with Client(urls, tmp_path / "c.key") as c:
        chain = c.chain_info()
        first = c.sign(ops.put(b"conflict/k", b"first"))
        other = sign_request(chain.domain, c._core.signer, Request(
            first.client_id, first.request_seq, ops.put(b"conflict/k", b"other"),
            first.valid_until))
        # pending: both in one batch to one node, the first admitted, the other refused
        with httpx.Client(timeout=10.0) as http:
            a, b = rpc_batch(http, urls[1] + "/", [("broadcast_tx_sync", {"tx": tx_param(r)})
                                                   for r in (first, other)])
        assert isinstance(a, dict) and a["status"] in ("accepted", "committed"), a
        assert isinstance(b, ConflictingRequest) and b.code == E.CONFLICTING_REQUEST, b
        assert "pending with different content" in b.message or "already used" in b.message
        # committed: the other content refused by every node, the first one replayed
        height = c.submit(first)["height"]
        wait_until(lambda: min(rpc(u, "status")["height"] for u in urls) >= height, 30,
                   "every node past the first content's block")
        for u in urls:
            with Client(u, tmp_path / "c.key", retries=0) as one:
                with pytest.raises(ConflictingRequest, match="already used by tx"):
                    one.submit(other, timeout=5.0)
                assert one.submit(first, timeout=5.0)["replayed"] is True
        assert c.get("conflict/k")["value"] == "first"
