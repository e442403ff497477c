"""A tampering proxy between the CLI and an honest node flips a byte in a value, drops a range
entry, replaces a lock holder, forges a tx status or a commit's result: the CLI (verifying
against the pinned genesis) exits non-zero with the verification error every time, and with a
second, honest node in `--rpc` it fails over and prints the right answer."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import trio

from bftnode.client import Client

from .cluster import proven_cluster
from .proxy import start_proxy

ROOT = Path(__file__).resolve().parents[3]


def _flip(s: str) -> str:
    return s[:-1] + chr(ord(s[-1]) ^ 1)


def flip_value(m, p, r):
    if m == "kv_get" and r.get("value"):
        r["value"] = _flip(r["value"])


def flip_value_and_proof(m, p, r):  # a consistent lie: the proof's entry flipped too
    if m == "kv_get" and r.get("value"):
        flip_value(m, p, r)
        for rng in r["proof"]["state"]:
            for e in rng["entries"]:
                e[1] = e[1][:-2] + format(int(e[1][-2:], 16) ^ 1, "02x")


def drop_entry(m, p, r):
    if m == "kv_range" and r.get("kvs"):
        del r["kvs"][1]
        r["count"] -= 1


def drop_entry_and_proof(m, p, r):  # the entry also taken out of the proven range
    if m == "kv_range" and r.get("kvs"):
        drop_entry(m, p, r)
        for rng in r["proof"]["state"]:
            keys = [e for e in rng["entries"] if b"list/" in bytes.fromhex(e[0])]
            if len(keys) > 1:
                rng["entries"].remove(keys[1])


def replace_holder(m, p, r):
    if m == "lock_status" and r.get("holder"):
        r["holder"]["token"] += 7
        r["holder"]["lease"] += 1


def forge_tx_code(m, p, r):
    if m in ("tx", "broadcast_tx_commit"):
        r["code"], r["code_name"] = 1, "not_found"


def forge_tx_status(m, p, r):
    if m == "tx_status" and r.get("committed"):
        r.update(status="UNKNOWN", committed=False)
        r.pop("tx", None)


async def _cli(home: Path, genesis: Path, urls: list[str], *argv: str) -> tuple[int, dict]:
    env = dict(os.environ, BFTNODE_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("BFTNODE_GENESIS", None)
    rpc = [a for u in urls for a in ("--rpc", u)]
    proc = await trio.run_process(
        [sys.executable, "-m", "bftnode", "client", *argv, "--json", "--genesis", str(genesis),
         "--timeout", "3", *rpc], capture_stdout=True, capture_stderr=True, check=False,
        env=env)
    return proc.returncode, json.loads(proc.stdout.decode())


async def test_the_cli_detects_every_tampered_answer_and_fails_over(tmp_path, port_base):
    async with proven_cluster(tmp_path, port_base) as (nodes, genesis):
        urls = [nd.node.rpc_url for nd in nodes]

        def setup():
            with Client(urls, tmp_path / "setup.key", genesis=genesis) as c:
                put = c.put("color", "blue")
                for i in range(5):
                    c.put(f"list/{i}", str(i))
                lease = c.lease_grant(60)
                token = c.lock_acquire("L", lease)
                return put["hash"], token

        tx_hash, token = await trio.to_thread.run_sync(setup)
        cases = [
            (flip_value, ["get", "color"], lambda o: o["value"] == "blue"),
            (flip_value_and_proof, ["get", "color"], lambda o: o["value"] == "blue"),
            (drop_entry, ["range", "list/"], lambda o: len(o["kvs"]) == 5),
            (drop_entry_and_proof, ["range", "list/"], lambda o: len(o["kvs"]) == 5),
            (replace_holder, ["lock", "status", "L"], lambda o: o["holder"]["token"] == token),
            (forge_tx_code, ["tx", tx_hash], lambda o: o["code"] == 0),
            (forge_tx_status, ["tx-status", tx_hash], lambda o: o["status"] == "COMMITTED"),
            (forge_tx_code, ["put", "other", "x"], lambda o: o["code"] == 0),
        ]
        home = tmp_path / "cli"
        home.mkdir()
        current = [cases[0][0]]
        seen = [0]
        async with trio.open_nursery() as nursery:
            proxy = await start_proxy(nursery, urls[0], port_base + 12,
                                      lambda m, p, r: current[0](m, p, r), seen)
            for tamper, argv, right in cases:
                current[0], seen[0] = tamper, 0
                for _ in range(2):  # every time
                    code, out = await _cli(home, genesis, [proxy], *argv)
                    assert code == 1, (tamper.__name__, out)
                    err = out["error"]
                    assert "verification failed" in err["message"], (tamper.__name__, err)
                    assert err["type"] in ("ForgedAnswer", "IncompleteAnswer", "StaleAnswer")
                code, out = await _cli(home, genesis, [proxy, urls[1]], *argv)
                assert code == 0 and right(out), (tamper.__name__, out)
                assert seen[0] >= 3, "the proxy was not on the path"
            nursery.cancel_scope.cancel()
