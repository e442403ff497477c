"""Hostile client input in attack scenarios (issue 35): the `[client_attack]` table and the
ledger check of a `relay-poison` validator's requests.

Owns `ClientAttack` (the table's fields), `HostileClient` (the thread that runs the attack
next to the scenario's normal load, then measures and judges it) and `poison_checks`.

The hostile client signs with a key of its own and does only what any client may:
  (a) the most expensive valid txs: it builds a history (`populate_txns` txns of 128 puts
      over `keys` keys), then submits one burst of `compacts` compact ops at rising
      revisions, `range_txns` txns of 128 full-keyspace range reads and `large_txns` of the
      largest legal txns (128 puts filling max_request_bytes), in JSON-RPC batches of
      `broadcast_tx_sync`;
  (b) while the burst executes, JSON-RPC calls with hostile params (`HOSTILE_RPC`: integers
      of 4,300+ digits or past 2^64, ids past 2^64, lone surrogates, JSON nested 10,000 and
      100,000 deep, NaN, …) over POST and GET, each of which must answer -32602 or -32700.
Measured over the burst (its first submission to the commit of its last tx), through
JSON-RPC and the runner's height monitor only: the longest wait between commits, the largest
agreed-time step between consecutive blocks (block headers), how far agreed time trailed the
runner's clock (same host), the result codes of the hostile txs, and every RPC answer code.

`poison_checks`: the requests a `relay-poison` validator relays are recomputed (its client key
is deterministic) and looked up with `tx` on every honest node: they must be on the ledger,
each with an error result (never ok, never internal_error), the same on every honest node.

Imports: stdlib, httpx, bftnode (keys, app.ops, app.errors, client), consensus, testnet.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bftnode.app import ops
from bftnode.app.errors import CODE_NAMES, INTERNAL, OK
from bftnode.client import ClientError, RPCCallError
from bftnode.client.core import load_refused, tx_param
from bftnode.client.sync import rpc_batch, rpc_call
from bftnode.keys import NodeKey
from consensus import Request, encode, request_digest, sign_request
from consensus.types import Config

BATCH_BODY_BYTES = 900 * 1024  # under the RPC's 1 MiB body limit
RPC_TIMEOUT_S = 10.0
POLL_S = 0.25
POISON_ROUNDS = 8  # relay-poison rounds looked up on the ledger


@dataclass(frozen=True)
class ClientAttack:
    start_s: float = 1.0  # seconds into the run (the normal load is running)
    keys: int = 2048  # distinct keys of the history (and of a full-keyspace read)
    populate_txns: int = 320  # txns of 128 puts building the history before the burst
    populate_value_bytes: int = 64
    compacts: int = 300  # compact ops in the burst, at rising revisions
    range_txns: int = 100  # txns of 128 full-keyspace range reads in the burst
    large_txns: int = 20  # largest legal txns in the burst
    rpc_rounds: int = 3  # times HOSTILE_RPC is sent, while the burst executes
    deadline_s: float = 60.0  # the hostile client stops after this long, done or not
    # acceptance during the burst: the longest wait between commits and the largest
    # agreed-time step between blocks; agreed time trails the clock by at most
    # max_clock_skew_ms (the consensus config's) (0 = measured and reported only)
    max_block_interval_ms: int = 2000
    check_time_lag: bool = True


# ---------------------------------------------------------------- hostile RPC calls

_BIG = "9" * 4_400  # past Python's 4,300-digit int() limit


def _body(method: str, params: str, id_: str = "1") -> bytes:
    return f'{{"jsonrpc":"2.0","id":{id_},"method":"{method}","params":{params}}}'.encode()


def _deep(n: int, inner: str = "1") -> str:
    return "[" * n + inner + "]" * n


HOSTILE_RPC: tuple[tuple[str, str, bytes | str], ...] = (
    # (label, "POST" with a raw body | "GET" with a path and query), each -32602 or -32700
    ("height: 4,400-digit integer", "POST", _body("block", f'{{"height":{_BIG}}}')),
    ("height: 4,400-digit string", "POST", _body("block", f'{{"height":"{_BIG}"}}')),
    ("height: 2^64", "POST", _body("block", f'{{"height":{2**64}}}')),
    ("height: -2^63-1", "POST", _body("block", f'{{"height":{-(2**63) - 1}}}')),
    ("height: Unicode digit", "POST", _body("block", '{"height":"\u00b2"}')),
    ("height: lone surrogate", "POST", _body("block", '{"height":"\\udc00"}')),
    ("height: nested 10,000 deep", "POST", _body("block", f'{{"height":{_deep(10_000)}}}')),
    ("id 2^64 with a bad param", "POST", _body("block", '{"height":"x"}', str(2**64))),
    ("id -2^64 with a bad param", "POST", _body("block", '{"height":"x"}', str(-(2**64)))),
    ("id of 4,400 digits", "POST", _body("status", "{}", _BIG)),
    ("kv_get key: escaped lone surrogate", "POST", _body("kv_get", '{"key":"\\ud800"}')),
    ("kv_get key: surrogate as raw bytes", "POST",
     b'{"jsonrpc":"2.0","id":1,"method":"kv_get","params":{"key":"\xed\xa0\x80"}}'),
    ("kv_get key: object nested 10,000 deep", "POST",
     _body("kv_get", '{"key":' + '{"a":' * 10_000 + "1" + "}" * 10_001)),
    ("kv_range limit: 4,400 digits", "POST", _body("kv_range", f'{{"key":"","limit":{_BIG}}}')),
    ("kv_range limit: 2^63", "POST", _body("kv_range", f'{{"key":"","limit":{2**63}}}')),
    ("blockchain min_height: 2^64", "POST", _body("blockchain", f'{{"min_height":{2**64}}}')),
    ("tx_status request_seq: 2^64", "POST",
     _body("tx_status", f'{{"client_id":"{"00" * 32}","request_seq":{2**64}}}')),
    ("tx hash: lone surrogate", "POST", _body("tx", '{"hash":"\\ud800"}')),
    ("lease_ttl id: -4,400 digits", "POST", _body("lease_ttl", f'{{"id":-{_BIG}}}')),
    ("broadcast_tx_commit timeout: NaN", "POST",
     _body("broadcast_tx_commit", '{"tx":"AAAA","timeout":NaN}')),
    ("broadcast_tx_commit timeout: 1e400", "POST",
     _body("broadcast_tx_commit", '{"tx":"AAAA","timeout":1e400}')),
    ("params nested 100,000 deep", "POST", _body("status", _deep(100_000, ""))),
    ("body nested 100,000 deep", "POST", _deep(100_000, "").encode()),
    ("method: escaped lone surrogate", "POST", _body("\\ud800", "{}")),
    ("GET block height: 4,400 digits", "GET", f"/block?height={_BIG}"),
    ("GET block height: surrogate bytes", "GET", "/block?height=%ED%A0%80"),
    ("GET blockchain min_height: 2^64", "GET", f"/blockchain?min_height={2**64}"),
)
EXPECTED_CODES = frozenset({-32602, -32700})


def hostile_call(http: httpx.Client, url: str, how: str, what: bytes | str) -> int | str:
    """Send one hostile call; its JSON-RPC error code, or a string saying what came back
    instead ("result", "HTTP 500", "no answer: ReadTimeout", …)."""
    try:
        if how == "GET":
            r = http.get(url.rstrip("/") + str(what), timeout=RPC_TIMEOUT_S)
        else:
            r = http.post(url, content=what, timeout=RPC_TIMEOUT_S,
                          headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        return f"no answer: {type(exc).__name__}"
    if r.status_code >= 500:
        return f"HTTP {r.status_code}"
    try:
        body = r.json()
    except ValueError:
        return f"HTTP {r.status_code}: not JSON"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, int) else f"error without a code: {body['error']}"
    return "result"


# ---------------------------------------------------------------- the hostile client


@dataclass
class Sent:
    kind: str  # populate, compact, range, large
    req: Request
    accepted: bool = False
    height: int | None = None
    code: int | None = None


@dataclass
class Figures:
    submit_codes: Counter = field(default_factory=Counter)  # error codes of submissions
    rpc_answers: Counter = field(default_factory=Counter)  # hostile RPC: code -> count
    rpc_unexpected: Counter = field(default_factory=Counter)  # "label: answer" -> count
    rpc_calls: int = 0
    burst_t: tuple[float, float] | None = None  # run time of its start and its end
    history_entries: int = 0
    revision_before_burst: int = 0
    notes: list[str] = field(default_factory=list)


class HostileClient:
    """The `[client_attack]` of one run: `run()` in a thread, then `checks()` and `report()`."""

    def __init__(self, run: Any, cfg: ClientAttack) -> None:
        self.r = run
        self.cfg = cfg
        self.signer = NodeKey.from_seed(os.urandom(32)).signer()
        self.seq = 0
        self.sent: list[Sent] = []
        self.fig = Figures()
        self.max_bytes = int(run.sc.consensus.get(
            "max_request_bytes", Config.__dataclass_fields__["max_request_bytes"].default))
        self.skew_ms = int(run.sc.consensus.get(
            "max_clock_skew_ms", Config.__dataclass_fields__["max_clock_skew_ms"].default))
        self.end = 0.0
        self.measured: dict[str, Any] = {}
        self.by_hash: dict[str, Sent] = {}  # tx hash -> what we sent
        self.in_blocks: set[str] = set()  # our tx hashes seen in blocks, results not read yet
        self.scanned = 0  # block headers read up to this height

    # -- building txs
    def sign(self, kind: str, op: bytes) -> Sent:
        self.seq += 1
        req = sign_request(self.r.domain, self.signer,
                           Request(self.signer.public_key, self.seq, op))
        self.sent.append(Sent(kind, req))
        self.by_hash[request_digest(req).hex()] = self.sent[-1]
        return self.sent[-1]

    def key(self, i: int) -> bytes:
        return f"hostile/{i % self.cfg.keys:06d}".encode()

    def puts_txn(self, first: int, value: bytes) -> bytes:
        return ops.txn(success=[ops.put_op(self.key(first + j), value)
                                for j in range(ops.MAX_TXN_OPS)])

    def largest_txn(self, first: int) -> bytes:
        """128 puts whose op is as large as a request may be (max_request_bytes)."""
        lo, hi = 0, self.max_bytes // ops.MAX_TXN_OPS
        while lo < hi:  # the largest value size that fits
            mid = (lo + hi + 1) // 2
            if len(self.puts_txn(first, b"L" * mid)) <= self.max_bytes:
                lo = mid
            else:
                hi = mid - 1
        return self.puts_txn(first, b"L" * lo)

    # -- the thread
    def run(self) -> None:
        r, cfg = self.r, self.cfg
        self.end = time.monotonic() + cfg.start_s + cfg.deadline_s
        if r.stop.wait(max(0.0, cfg.start_s - r.now())):
            return
        with httpx.Client() as http:
            value = b"h" * cfg.populate_value_bytes
            populate = [self.sign("populate", self.puts_txn(k * ops.MAX_TXN_OPS, value))
                        for k in range(cfg.populate_txns)]
            self.submit(http, populate)
            self.wait_committed(http, populate)
            self.fig.history_entries = sum(ops.MAX_TXN_OPS for s in populate if s.code == OK)
            rev = self.current_revision(http)
            self.fig.revision_before_burst = rev
            n = cfg.compacts
            targets = [max(1, rev * (k + 1) // (n + 1)) for k in range(n)]
            burst = [self.sign("compact", ops.compact(t)) for t in targets]
            ranges = ops.txn(success=[ops.range_op(b"", prefix=True)] * ops.MAX_TXN_OPS)
            burst += [self.sign("range", ranges) for _ in range(cfg.range_txns)]
            burst += [self.sign("large", self.largest_txn(k * 7)) for k in range(cfg.large_txns)]
            if r.stop.is_set() or time.monotonic() > self.end:
                self.fig.notes.append("no time left for the burst")
                return
            t0 = r.now()
            rpc = threading.Thread(target=self.hostile_rpc, daemon=True)
            rpc.start()
            self.submit(http, burst)
            self.wait_committed(http, burst)
            self.fig.burst_t = (t0, r.now())
            rpc.join(max(0.0, self.end - time.monotonic()) + RPC_TIMEOUT_S)

    def live(self) -> list[str]:
        return [self.r.urls[i] for i in self.r.live_honest()]

    def next_url(self, k: int) -> str | None:
        """The k-th live honest node in turn; None (after a short wait) while none is live."""
        urls = self.live()
        if not urls:
            self.r.stop.wait(0.2)
            return None
        return urls[k % len(urls)]

    def submit(self, http: httpx.Client, txs: list[Sent]) -> None:
        """broadcast_tx_sync in batches under the body limit, to the live honest nodes in
        turn; a batch that gets no answer goes to the next node (the same signed txs), and
        txs refused for load (`retry_after`) go again after that wait."""
        chunks: list[list[Sent]] = [[]]
        size = 0
        for s in txs:
            b64 = 4 * (len(encode(s.req)) + 2) // 3 + 64
            if chunks[-1] and size + b64 > BATCH_BODY_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(s)
            size += b64
        k = 0
        for chunk in filter(None, chunks):
            while chunk and time.monotonic() < self.end and not self.r.stop.is_set():
                url, k = self.next_url(k), k + 1
                if url is None:
                    continue
                calls = [("broadcast_tx_sync", {"tx": tx_param(s.req)}) for s in chunk]
                try:
                    answers = rpc_batch(http, url, calls, timeout=30.0)
                except (httpx.HTTPError, ClientError) as exc:
                    self.fig.submit_codes[f"no answer: {type(exc).__name__}"] += 1
                    continue
                idx, pause = load_refused(answers)  # the same txs again after the wait
                again, refused = [chunk[i] for i in idx], set(idx)
                for i, (s, a) in enumerate(zip(chunk, answers, strict=True)):
                    if i in refused:
                        self.fig.submit_codes[f"{a.code} (sent again)"] += 1
                    elif isinstance(a, RPCCallError):
                        self.fig.submit_codes[a.code] += 1
                    else:
                        s.accepted = True
                        self.fig.submit_codes["accepted"] += 1
                chunk = again
                if pause:
                    self.r.stop.wait(pause)

    def wait_committed(self, http: httpx.Client, txs: list[Sent]) -> None:
        """Follow the block headers (`blockchain`, with tx hashes) until every accepted tx of
        `txs` is in a block, reading each one's result with `tx` once it is, or the deadline.
        Not `tx` or `tx_status` per pending tx: `tx` answers a not-found error (which the node
        logs) until then, and a committed `tx_status` carries its whole block."""
        k = 0
        while time.monotonic() < self.end and not self.r.stop.is_set():
            if not any(s.accepted and s.height is None for s in txs):
                return
            url, k = self.next_url(k), k + 1
            if url is None:
                continue
            try:
                self.scan(http, url)
                found = sorted(self.in_blocks)
                for at in range(0, len(found), 500):
                    part = found[at: at + 500]
                    answers = rpc_batch(http, url, [("tx", {"hash": h}) for h in part],
                                        RPC_TIMEOUT_S)
                    for h, res in zip(part, answers, strict=True):
                        if isinstance(res, dict) and "height" in res:
                            s = self.by_hash[h]
                            s.height, s.code = int(res["height"]), int(res.get("code", 0))
                            self.in_blocks.discard(h)
            except (httpx.HTTPError, ClientError, ValueError, KeyError, TypeError):
                pass
            self.r.stop.wait(POLL_S)

    def scan(self, http: httpx.Client, url: str) -> None:
        """Block headers from the last scanned height to `url`'s height: our txs in them."""
        top = int(rpc_call(http, url, "status", timeout=RPC_TIMEOUT_S)["height"])
        while self.scanned < top:
            hi = min(top, self.scanned + 100)
            res = rpc_call(http, url, "blockchain", {"min_height": self.scanned + 1,
                                                     "max_height": hi}, RPC_TIMEOUT_S)
            for b in res["blocks"]:
                self.in_blocks.update(h for h in b.get("tx_hashes", []) if h in self.by_hash)
            self.scanned = hi

    def current_revision(self, http: httpx.Client) -> int:
        for url in self.live():
            try:
                return int(rpc_call(http, url, "revision", timeout=RPC_TIMEOUT_S)["revision"])
            except (httpx.HTTPError, ClientError, ValueError, KeyError, TypeError):
                continue
        return 0

    def hostile_rpc(self) -> None:
        with httpx.Client() as http:
            for round_ in range(self.cfg.rpc_rounds):
                for label, how, what in HOSTILE_RPC:
                    if time.monotonic() > self.end:
                        return
                    urls = self.live()
                    if not urls:
                        continue
                    url = urls[(round_ + self.fig.rpc_calls) % len(urls)]
                    answer = hostile_call(http, url, how, what)
                    self.fig.rpc_calls += 1
                    self.fig.rpc_answers[answer] += 1
                    if answer not in EXPECTED_CODES:
                        self.fig.rpc_unexpected[f"{label}: {answer}"] += 1

    # -- after the run: measure and judge
    def measure(self, http: httpx.Client, urls: dict[int, str]) -> dict[str, Any]:
        """Figures over the burst from block headers and the runner's height monitor."""
        burst = [s for s in self.sent if s.kind != "populate"]
        heights = sorted({s.height for s in burst if s.height is not None})
        m: dict[str, Any] = {"burst_txs": len(burst),
                             "burst_committed": sum(s.height is not None for s in burst),
                             "burst_heights": [heights[0], heights[-1]] if heights else None}
        if not heights or self.fig.burst_t is None or not urls:
            return m
        lo, hi = max(1, heights[0] - 1), heights[-1] + 1
        blocks: dict[int, dict] = {}
        for url in urls.values():
            try:
                for top in range(hi, lo - 1, -100):
                    res = rpc_batch(http, url, [("blockchain", {
                        "min_height": max(lo, top - 99), "max_height": top})], RPC_TIMEOUT_S)[0]
                    for b in (res if isinstance(res, dict) else {}).get("blocks", []):
                        blocks[int(b["height"])] = b
                break
            except (httpx.HTTPError, ClientError):
                continue
        times = {h: int(b["time"]) for h, b in blocks.items()}
        steps = [(times[h] - times[h - 1], h) for h in range(lo + 1, hi + 1)
                 if h in times and h - 1 in times]
        if steps:
            step, at = max(steps)
            m["max_time_step_ms"], m["max_time_step_at"] = step, at
        seen = self.first_seen()
        lags = [(seen[h] - times[h], h) for h in range(heights[0], heights[-1] + 1)
                if h in seen and h in times]
        if lags:
            lag, at = max(lags)
            m["max_time_lag_ms"], m["max_time_lag_at"] = round(lag), at
        t0, t1 = self.fig.burst_t
        m["burst_s"] = round(t1 - t0, 2)
        m["max_commit_gap_ms"] = round(1000 * self.commit_gap(t0, t1))
        m["blocks_in_burst"] = hi - lo - 1
        m["burst_txs_per_block_max"] = max(Counter(
            s.height for s in burst if s.height is not None).values())
        kinds = {request_digest(s.req).hex(): s.kind for s in self.sent}
        t0_ms = self.r.t0_wall_ms
        m["blocks"] = [
            {"height": h, "view": blocks[h].get("view"), "txs": blocks[h].get("num_txs"),
             "hostile": dict(Counter(kinds[x] for x in blocks[h].get("tx_hashes", [])
                                     if x in kinds)),
             "time_s": round((times[h] - t0_ms) / 1000, 3),
             "seen_s": round((seen[h] - t0_ms) / 1000, 3) if h in seen else None}
            for h in range(lo, hi + 1) if h in blocks]
        return m

    def first_seen(self) -> dict[int, float]:
        """Height -> wall-clock ms when an honest node was first seen at or above it."""
        with self.r.lock:
            events = sorted((t, h) for i in self.r.honest for t, h in self.r.heights[i])
        out: dict[int, float] = {}
        top = 0
        for t, h in events:
            for x in range(top + 1, h + 1):
                out[x] = self.r.t0_wall_ms + 1000.0 * t
            top = max(top, h)
        return out

    def commit_gap(self, t0: float, t1: float) -> float:
        """The longest stretch in [t0, t1] (run time) with no new honest height."""
        with self.r.lock:
            events = sorted((t, h) for i in self.r.honest for t, h in self.r.heights[i])
        ups, top = [], 0
        for t, h in events:
            if h > top:
                ups.append(t)
                top = h
        marks = [t0] + [t for t in ups if t0 < t < t1] + [t1]
        return max(b - a for a, b in zip(marks, marks[1:], strict=False))

    def checks(self, http: httpx.Client, urls: dict[int, str]) -> list[Any]:
        from testnet.attack import OK as PASS
        from testnet.attack import VIOLATED, Check

        cfg, fig = self.cfg, self.fig
        m = self.measured = self.measure(http, urls)
        m["honest_up"] = f"{len(urls)} of {len(self.r.honest)}"  # answering at the end
        out = []
        internal = fig.rpc_answers.get(-32603, 0) + fig.submit_codes.get(-32603, 0)
        bad = sum(fig.rpc_unexpected.values())
        out.append(Check(
            "hostile rpc: -32602/-32700 only", VIOLATED if internal or bad or not fig.rpc_calls
            else PASS, f"{fig.rpc_calls} hostile calls, answers {_counts(fig.rpc_answers)}; "
            f"-32603: {internal}" + (f"; unexpected: {dict(fig.rpc_unexpected)}" if bad else "")))
        burst = [s for s in self.sent if s.kind != "populate"]
        codes = {kind: Counter(CODE_NAMES.get(s.code, "uncommitted") if s.height is not None
                               else ("uncommitted" if s.accepted else "refused")
                               for s in burst if s.kind == kind)
                 for kind in ("compact", "range", "large")}
        m["codes"] = {k: dict(v) for k, v in codes.items()}
        broken = [s for s in burst if s.code == INTERNAL]
        missing = [s for s in burst if s.height is None]
        out.append(Check(
            "hostile txs executed", VIOLATED if broken or missing or not burst else PASS,
            f"{len(burst) - len(missing)} of {len(burst)} burst txs committed "
            f"(history {fig.history_entries} entries, revision {fig.revision_before_burst}): "
            f"{m['codes']}" + (f"; internal_error: {len(broken)}" if broken else "")
            + (f"; notes: {fig.notes}" if fig.notes else "")))
        if cfg.max_block_interval_ms:
            worst = max(m.get("max_commit_gap_ms", 0), m.get("max_time_step_ms", 0))
            ok = "max_time_step_ms" in m and worst <= cfg.max_block_interval_ms
            out.append(Check(
                "block interval under the burst", PASS if ok else VIOLATED,
                f"longest wait between commits {m.get('max_commit_gap_ms')} ms, largest "
                f"agreed-time step {m.get('max_time_step_ms')} ms at height "
                f"{m.get('max_time_step_at')} (bound {cfg.max_block_interval_ms} ms) over "
                f"{m.get('blocks_in_burst')} blocks in {m.get('burst_s')} s (heights "
                f"{m.get('burst_heights')}, at most {m.get('burst_txs_per_block_max')} burst "
                f"txs in one block)"))
        if cfg.check_time_lag:
            lag = m.get("max_time_lag_ms")
            out.append(Check(
                "agreed time within skew under the burst",
                PASS if lag is not None and lag <= self.skew_ms else VIOLATED,
                f"agreed time trailed the clock by at most {lag} ms (height "
                f"{m.get('max_time_lag_at')}; max_clock_skew_ms {self.skew_ms})"))
        return out

    def report(self) -> dict[str, Any]:
        fig = self.fig
        return {"config": vars(self.cfg), **self.measured,
                "rpc_calls": fig.rpc_calls, "rpc_answers": _counts(fig.rpc_answers),
                "rpc_internal_errors": fig.rpc_answers.get(-32603, 0),
                "rpc_unexpected": dict(fig.rpc_unexpected),
                "submit_answers": _counts(fig.submit_codes),
                "history_entries": fig.history_entries,
                "revision_before_burst": fig.revision_before_burst, "notes": fig.notes}


def _counts(c: Counter) -> dict[str, int]:
    return {str(k): v for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}


# ---------------------------------------------------------------- relay-poison on the ledger


def poison_checks(run: Any, http: httpx.Client, urls: dict[int, str]) -> list[Any]:
    """The first POISON_ROUNDS rounds of each `relay-poison` validator's requests, looked up
    on every live honest node: some on the ledger, each with an error result (not ok, not
    internal_error) and the same result everywhere."""
    from testnet.adversary import parse_strategy, relay_poison_signer
    from testnet.attack import OK as PASS
    from testnet.attack import VIOLATED, Check

    poisoners = {i: s for i, specs in run.sc.byzantine.items() for s in specs
                 if s.split(":")[0] == "relay-poison"}
    if not poisoners:
        return []
    max_bytes = int(run.sc.consensus.get(
        "max_request_bytes", Config.__dataclass_fields__["max_request_bytes"].default))
    lookups: list[tuple[str, str]] = []  # (variant, tx hash)
    for i, spec in sorted(poisoners.items()):
        strategy = parse_strategy(spec)
        names = [name for name, _ in strategy.ops(max_bytes)]
        for k in range(POISON_ROUNDS):
            reqs = strategy.round_requests(run.domain, relay_poison_signer(i), k, max_bytes)
            lookups += [(f"node{i}/{name}", request_digest(q).hex())
                        for name, q in zip(names, reqs, strict=True)]
    seen: dict[str, dict[int, tuple]] = {}
    problems: list[str] = []
    for j, url in urls.items():
        try:
            # codes only: a proven answer carries its whole block (the pre-prepare), so the
            # batch's read budget would cut the lookups short
            answers = rpc_batch(http, url, [("tx", {"hash": h, "prove": False})
                                            for _, h in lookups], 30.0)
        except (httpx.HTTPError, ClientError) as exc:
            problems.append(f"node{j}: tx lookups failed ({type(exc).__name__})")
            continue
        for (_, h), res in zip(lookups, answers, strict=True):
            if isinstance(res, dict) and "code" in res:
                seen.setdefault(h, {})[j] = (res["height"], res["code"], res.get("code_name"))
    by_variant: dict[str, Counter] = {}
    for name, h in lookups:
        where = seen.get(h)
        if not where:
            continue
        if len(set(where.values())) > 1:
            problems.append(f"{name}: different results on the honest nodes {where}")
        for _, code, code_name in set(where.values()):
            by_variant.setdefault(name.split("/", 1)[1], Counter())[code_name] += 1
            if code in (OK, INTERNAL):
                problems.append(f"{name} executed with code {code} ({code_name})")
    found = sum(1 for _, h in lookups if h in seen)
    summary = {v: dict(c) for v, c in sorted(by_variant.items())}
    run.poison = {"checked": len(lookups), "on_ledger": found, "results": summary}
    detail = (f"{found} of the first {len(lookups)} relayed poison txs on the ledger of "
              f"{len(urls)} honest nodes, results per variant {json.dumps(summary)}")
    if problems or not found:
        return [Check("poison txs fail cleanly", VIOLATED,
                      "; ".join(problems[:4]) or f"none on the ledger: {detail}")]
    return [Check("poison txs fail cleanly", PASS, detail)]
