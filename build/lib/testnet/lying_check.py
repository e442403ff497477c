"""`python -m testnet attack lying-reads [--reads N] [--json]`: a real 4-node testnet with
authenticated state whose node 3 runs `lying-reads` (testnet/adversary/lying_reads.py); a
verifying client (pinned to the testnet's genesis) reads from that node ONLY, N times, over
every proven read (kv_get of present and missing keys, kv_range, revision, lease_ttl,
lock_status, election_leader, tx, tx_status committed and not) plus a write through it every
50 reads. Verdict: every lie the node counted (HOME/lying-reads.json) was caught by the client
as a VerificationError, and no honest answer was refused. Also measured on an honest node:
proof bytes and client verify time per kv_get.
Imports: stdlib, httpx, bftnode.client, testnet (launcher, adversary).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bftnode.client import Client, VerificationError
from bftnode.client.verify import ProofVerifier, chain_from_genesis
from testnet import launcher
from testnet.adversary.lying_reads import OLD_BY, read_stats

LIAR = 3
WRITE_EVERY = 50


def _ops(c: Client, setup: dict[str, Any]) -> list[tuple[str, Callable[[], Any]]]:
    core = c._core
    return [
        ("kv_get", lambda: c.get("lr/a")),
        ("kv_get_missing", lambda: c.get("lr/missing")),
        ("kv_range", lambda: c.range("lr/")),
        ("revision", lambda: c._run(core.read("revision", {}))),
        ("lease_ttl", lambda: c.lease_ttl(setup["lease"])),
        ("lock_status", lambda: c.lock_status("lr/lock")),
        ("election_leader", lambda: c.leader("lr/election")),
        ("tx", lambda: c.tx(setup["tx"])),
        ("tx_status", lambda: c.tx_status(setup["tx"])),
        ("tx_status_unknown", lambda: c.tx_status(setup["unsent"])),
    ]


def _setup(urls: list[str], genesis: Path, key: Path) -> dict[str, Any]:
    with Client(urls, key, genesis=genesis) as c:
        put = c.put("lr/a", "alpha")
        for i in range(8):
            c.put(f"lr/k{i}", str(i))
        lease = c.lease_grant(600)
        c.lock_acquire("lr/lock", lease)
        c.campaign("lr/election", lease, "leader-1")
        unsent = c.sign(b"\x00")  # signed, never sent: "not committed" is provable for it
        return {"tx": put["hash"], "lease": lease, "height": c.status()["height"],
                "unsent": unsent}


def _wait_height(url: str, height: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as http:
        while time.monotonic() < deadline:
            body = {"jsonrpc": "2.0", "id": 1, "method": "status", "params": {}}
            if http.post(url, json=body).json()["result"]["height"] >= height:
                return
            time.sleep(0.2)  # heartbeat blocks come about once a second
    raise launcher.LauncherError(f"the testnet did not reach height {height} in {timeout:g}s")


def measure_proofs(url: str, genesis: Path, n: int = 100) -> dict[str, Any]:
    """Proof bytes and client verify time of kv_get on an honest node."""
    chain = chain_from_genesis(genesis)
    sizes, bare, verify_ms = [], [], []
    with httpx.Client(timeout=10) as http:
        for _ in range(n):
            body = {"jsonrpc": "2.0", "id": 1, "method": "kv_get", "params": {"key": "lr/a"}}
            r = http.post(url, json=body)
            sizes.append(len(r.content))
            body["params"]["prove"] = False
            bare.append(len(http.post(url, json=body).content))
            res = r.json()["result"]
            t = time.perf_counter()
            ProofVerifier(chain).app_read("kv_get", {"key": "lr/a"}, res)
            verify_ms.append((time.perf_counter() - t) * 1000)
    return {"kv_get_answer_bytes": int(statistics.median(sizes)),
            "kv_get_bare_bytes": int(statistics.median(bare)),
            "verify_ms_p50": round(statistics.median(verify_ms), 3),
            "verify_ms_max": round(max(verify_ms), 3)}


def run_lying_reads(reads: int = 1000, d: Path | None = None, base_port: int | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = log or (lambda s: None)
    tmp = d is None
    d = Path(tempfile.mkdtemp(prefix="lying-reads-")) if d is None else d
    kw = {} if base_port is None else {"base_port": base_port}
    say(f"starting a 4-node testnet in {d} (node {LIAR}: lying-reads)")
    m = launcher.up(d, 4, open_chain=True, byzantine={LIAR: ["lying-reads"]}, authenticated_state=True, **kw)
    try:
        urls = [n["rpc"] for n in m["nodes"]]
        homes = [Path(n["home"]) for n in m["nodes"]]
        genesis = homes[0] / "genesis.json"
        setup = _setup(urls[:LIAR], genesis, d / "setup.key")
        _wait_height(urls[0], setup["height"] + OLD_BY + 2)  # old versions postdate the setup
        say(f"reading {reads} times from node {LIAR} only")
        t0 = time.monotonic()
        outcome: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        with Client([urls[LIAR]], d / "reader.key", genesis=genesis, retries=0,
                    timeout=20) as c:
            ops = _ops(c, setup)
            c.put("lr/warm", "1")  # a first verified height: old versions are stale after it
            for i in range(reads):
                name, op = ops[i % len(ops)]
                try:
                    op()
                    outcome["verified"] += 1
                except VerificationError as exc:
                    outcome["refused"] += 1
                    errors[type(exc).__name__] += 1
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    outcome["other_error"] += 1
                    errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                if i % WRITE_EVERY == WRITE_EVERY - 1:
                    c.put(f"lr/w{i}", str(i))  # retried to the same node until honest
            detected = len(c._core.rejected)
            caught: Counter[str] = Counter(type(e).__name__ for _, e in c._core.rejected)
        elapsed = time.monotonic() - t0
        stats = read_stats(homes[LIAR])
        proofs = measure_proofs(urls[0], genesis)
    finally:
        launcher.down(d)
        if tmp:
            shutil.rmtree(d, ignore_errors=True)
    told = stats["told"]
    report = {
        "reads": reads, "elapsed_s": round(elapsed, 1), "lies_told": told,
        "lies_detected": detected, "missed": max(0, told - detected),
        "false_alarms": max(0, detected - told), "lie_kinds": stats["kinds"],
        "detected_as": dict(caught), "outcomes": dict(outcome), "errors": dict(errors),
        "proofs": proofs,
    }
    report["ok"] = (told > 0 and detected == told and outcome["other_error"] == 0
                    and outcome["verified"] + outcome["refused"] == reads)
    return report


def print_report(rep: dict[str, Any]) -> None:
    verdict = "PASS" if rep["ok"] else "FAIL"
    print(f"attack lying-reads: {verdict}: {rep['reads']} reads in {rep['elapsed_s']}s, "
          f"{rep['lies_told']} lies told, {rep['lies_detected']} detected "
          f"(missed {rep['missed']}, false alarms {rep['false_alarms']})")
    print(f"  lies: {rep['lie_kinds']}")
    print(f"  detected as: {rep['detected_as']}; outcomes: {rep['outcomes']}")
    if rep["errors"]:
        print(f"  errors: {rep['errors']}")
    p = rep["proofs"]
    print(f"  honest kv_get: {p['kv_get_answer_bytes']} B with proof, {p['kv_get_bare_bytes']} B "
          f"bare; client verify p50 {p['verify_ms_p50']} ms (max {p['verify_ms_max']} ms)")
