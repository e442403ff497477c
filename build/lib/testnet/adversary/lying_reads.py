"""`lying-reads[:PERCENT]`: a validator that lies in its RPC answers (consensus untouched).

On about PERCENT % (default 50) of its PROVEN read answers it tells one lie, picked by a
seeded RNG among those that fit the answer: an altered value, a hidden key, a made-up key, a
range entry dropped (from the answer, or from the answer and its proof), a proof stripped, a
lock holder or election leader replaced, a lease's TTL or the revision changed, a forged tx
code or status, or an OLD version (a valid proof of the state `OLD_BY` blocks back, served
through the certificate accessor). Every lie is counted in HOME/lying-reads.json
({"told": N, "kinds": {...}}), so a test can check the client caught each one.

As a replica strategy (`--byzantine I:lying-reads`) it changes nothing: `testnet node` sees
the name and installs `LyingReads` on the node's `answer_hook` seam; in the simulator (no
RPC) it is an honest replica. Imports: stdlib, testnet.adversary.context.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .context import Strategy

OLD_BY = 10  # blocks back (> the client's max_lag_blocks; the tree retains 100 versions)
STATS_FILE = "lying-reads.json"


class LyingReadsStrategy(Strategy):
    """The replica half: none (the lies are in the node's RPC answers)."""

    name = "lying-reads"

    def __init__(self, percent: int = 50) -> None:
        if not 0 <= percent <= 100:
            raise ValueError("lying-reads:PERCENT needs 0..100")
        self.percent = percent

    def __repr__(self) -> str:
        return self.name if self.percent == 50 else f"{self.name}:{self.percent}"


def _flip(s: Any) -> Any:
    if isinstance(s, str) and s:
        return s[:-1] + chr(ord(s[-1]) ^ 1)
    if isinstance(s, dict) and "base64" in s:
        return {"base64": ("A" if not s["base64"].startswith("A") else "B") + s["base64"][1:]}
    return "forged"


def _lies(method: str, r: dict[str, Any]) -> list[str]:
    """The lies that fit this answer (each changes what it says)."""
    out = ["strip-proof"]
    if method == "kv_get":
        out += ["flip-value", "hide-key"] if r.get("found") else ["fake-value"]
    elif method == "kv_range":
        kvs = r.get("kvs") or []
        out += ["fake-entry"]
        if kvs:
            out += ["drop-entry", "drop-entry-and-proof", "flip-value"]
    elif method == "lock_status":
        out += ["replace-holder"]
    elif method == "election_leader":
        out += ["replace-leader"]
    elif method == "lease_ttl":
        out += ["change-ttl"]
    elif method == "revision":
        out += ["change-revision"]
    elif method in ("tx", "broadcast_tx_commit"):
        out += ["forge-code", "forge-result"]
    elif method == "tx_status":
        out += ["forge-status"]
    return out


def tell(kind: str, method: str, r: dict[str, Any]) -> None:
    """Tell lie `kind` in answer `r` (in place)."""
    if kind == "strip-proof":
        if method == "tx_status" and r.get("committed"):
            r["tx"].pop("proof", None)
        else:
            r.pop("proof", None)
    elif kind == "flip-value" and method == "kv_get":
        r["value"] = _flip(r["value"])
    elif kind == "flip-value":
        r["kvs"][0]["value"] = _flip(r["kvs"][0].get("value"))
    elif kind == "hide-key":
        r.update(found=False, value=None, create_revision=0, mod_revision=0, version=0)
    elif kind == "fake-value":
        r.update(found=True, value="forged", create_revision=1, mod_revision=1, version=1)
    elif kind == "fake-entry":
        kv = {"key": "zz-forged", "value": "forged", "create_revision": 1, "mod_revision": 1,
              "version": 1, "lease": 0}
        r["kvs"] = [*(r.get("kvs") or []), kv]
        r["count"] = r.get("count", 0) + 1
    elif kind in ("drop-entry", "drop-entry-and-proof"):
        gone = r["kvs"].pop(0)
        r["count"] = max(0, r.get("count", 1) - 1)
        if kind == "drop-entry-and-proof":
            key = gone["key"].encode().hex() if isinstance(gone["key"], str) else ""
            for rng in r["proof"]["state"]:
                rng["entries"] = [e for e in rng["entries"] if not e[0].endswith(key)]
    elif kind == "replace-holder":
        h = r.get("holder")
        r["holder"] = {**h, "token": h["token"] + 1} if h else {
            "token": 1, "lease": 1, "owner": "forged", "value": ""}
    elif kind == "replace-leader":
        r.update(leader=_flip(r.get("leader")), has_leader=True, token=r.get("token", 0) + 1)
    elif kind == "change-ttl":
        r["ttl_ms"] = r.get("ttl_ms", 0) + 1000
    elif kind == "change-revision":
        r["revision"] = r.get("revision", 0) + 1
    elif kind == "forge-code":
        r["code"], r["code_name"] = (1 if r.get("code") == 0 else 0), "forged"
    elif kind == "forge-result":
        r["result_raw"] = "gA=="  # msgpack {}
    elif kind == "forge-status":
        if r.get("committed"):
            r.update(status="UNKNOWN", committed=False)
            r.pop("tx", None)
        else:
            r.update(status="COMMITTED", committed=True, tx={"hash": r.get("hash")})


class LyingReads:
    """The node half: `answer_hook` (lies in answers) and a certificate accessor that serves
    old versions. Decisions come from a seeded RNG; every lie is counted in the stats file."""

    def __init__(self, node: Any, home: str | os.PathLike, percent: int = 50,
                 seed: int = 28) -> None:
        self.rng = random.Random(seed)
        self.percent = percent
        self.stats_path = Path(home) / STATS_FILE
        self.kinds: Counter[str] = Counter()
        self.told = 0
        self._old_seqs: set[int] = set()  # heights of the old versions served
        self._inner: Callable[..., Any] | None = getattr(node, "state_certificate", None)
        if self._inner is not None:
            node.state_certificate = self._certificate
        node.answer_hook = self
        self._save()

    def _lie_now(self) -> bool:
        return self.rng.randrange(100) < self.percent

    def _certificate(self, height: int | None = None) -> Any:
        inner = self._inner
        assert inner is not None
        if height is None and self._lie_now() and self.rng.randrange(8) == 0:
            latest = inner(None)
            old = inner(latest.seq - OLD_BY) if latest is not None and \
                latest.seq > OLD_BY else None
            if old is not None:
                if len(self._old_seqs) > 10_000:
                    self._old_seqs.clear()
                self._old_seqs.add(old.seq)
                return old
        return inner(height)

    def __call__(self, method: str, params: Any, result: Any) -> Any:
        if not isinstance(result, dict):
            return result
        proven = "proof" in result or "proof" in (result.get("tx") or {})
        proof = result.get("proof") or {}
        if "state" in proof and proof.get("height") in self._old_seqs:
            # served from an old certificate (honest answers are at the latest, always above)
            self._count("old-version")
            return result
        if not proven or not self._lie_now():
            return result
        kind = self.rng.choice(_lies(method, result))
        lied = copy.deepcopy(result)
        tell(kind, method, lied)
        if lied == result:  # nothing changed (should not happen): not a lie
            return result
        self._count(kind)
        return lied

    def _count(self, kind: str) -> None:
        self.told += 1
        self.kinds[kind] += 1
        self._save()

    def _save(self) -> None:
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"told": self.told, "kinds": dict(self.kinds)}))
        os.replace(tmp, self.stats_path)


def read_stats(home: str | os.PathLike) -> dict[str, Any]:
    p = Path(home) / STATS_FILE
    return json.loads(p.read_text()) if p.exists() else {"told": 0, "kinds": {}}
