"""The sans-I/O core of the client: what to send, what an answer means, whom to ask next.

Owns, as pure functions and small state: JSON-RPC request building (single calls, batch
arrays, the WebSocket subscribe call) and THE parser of answers (`parse_reply` for one call,
`batch_results` for a batch array, `sub_message` for a subscription message); failover order
(`Endpoints`) and retry decisions (`retry_status`, `backoff`, `retry_submit`); checking a commit
certificate through `consensus.certificates`; shaping results (app codes, lock tokens,
linearizable reads). `flows.py` composes these into the client's operations as generators that
yield the only I/O they need (`Post`, `Sleep`); `sync.py` and `aio.py` perform those.
Imports: stdlib, msgspec, consensus, bftnode.client.errors, bftnode.rpc.errors. No httpx, no
clock, no sockets.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec

from consensus import (
    Authenticator,
    Commit,
    CommittedBlock,
    Config,
    Ed25519Verifier,
    PrePrepare,
    Request,
    decode,
    encode,
    request_digest,
)
from consensus.certificates import verify_committed_block
from consensus.errors import DecodeError

from ..rpc import errors as E
from .errors import (
    BadAnswer,
    ClientError,
    NoNodeAvailable,
    RPCCallError,
    SubscriptionClosed,
    TxFailed,
    VerificationError,
    raise_rpc_error,
    rpc_error,
)

DEFAULT_URL = "http://127.0.0.1:26657"
JSON_HEADERS = {"content-type": "application/json"}

# ---------------------------------------------------------------- the I/O a flow asks for


@dataclass(frozen=True)
class Post:
    """POST `body` (JSON bytes) to `url`; the flow gets a `Reply` back, or `TransportFailure`
    thrown in when no HTTP answer came."""

    url: str
    body: bytes


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes


class TransportFailure(Exception):
    """No HTTP answer (connect error, timeout...); `cause` is the transport's exception."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or _first_reason(cause))
        self.cause = cause


def _first_reason(exc: BaseException | None) -> str:
    """The first non-empty message down `exc`'s causes (httpx under anyio may wrap a TLS
    verification failure in an empty ConnectError)."""
    name = type(exc).__name__
    while exc is not None:
        if str(exc):
            return f"{type(exc).__name__}: {exc}"
        exc = exc.__cause__ or exc.__context__
    return name


Flow = Generator["Post | Sleep", "Reply | None", Any]


@dataclass(frozen=True)
class Done:
    value: Any


def step(flow: Flow, outcome: Reply | TransportFailure | None) -> Post | Sleep | Done:
    """Feed the outcome of the last effect to `flow`; its next effect, or Done(result)."""
    try:
        if isinstance(outcome, TransportFailure):
            return flow.throw(outcome)
        return flow.send(outcome)
    except StopIteration as stop:
        return Done(stop.value)


# ---------------------------------------------------------------- requests and THE parser


def encode_json(obj: Any) -> bytes:
    return msgspec.json.encode(obj, enc_hook=_plain_int)


def _plain_int(obj: Any) -> int:
    """A HeldLease / HeldLock (int subclasses) in params encodes as its int."""
    if isinstance(obj, int):
        return int(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def request(method: str, params: dict[str, Any], id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def batch_request(calls: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """A JSON-RPC batch array; the ids are the calls' positions."""
    return [request(m, p, k) for k, (m, p) in enumerate(calls)]


def tx_param(req: Request) -> str:
    return base64.b64encode(encode(req)).decode("ascii")


def decode_json(content: bytes | str, status: int | None = None) -> Any:
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        where = f"HTTP {status}: " if status is not None else ""
        raise BadAnswer(f"{where}not a JSON-RPC answer") from None


def answer(obj: Any) -> Any:
    """One answer object's result, or its error as an RPCCallError (returned, not raised)."""
    if not isinstance(obj, dict):
        return BadAnswer("unexpected JSON-RPC answer (not an object)")
    if "error" in obj:
        return rpc_error(obj["error"])
    return obj.get("result")


def parse_reply(reply: Reply) -> Any:
    """The result of a single call's HTTP reply; raises its RPCCallError."""
    res = answer(decode_json(reply.content, reply.status))
    if isinstance(res, RPCCallError):
        raise res
    return res


def batch_results(content: bytes, payload: list[dict[str, Any]]) -> list[Any]:
    """Results of a JSON-RPC batch in request order; a failed call becomes its RPCCallError
    (a call the answer lacks: BadAnswer). Raises when the whole batch was refused."""
    body = decode_json(content)
    if isinstance(body, dict):  # the whole batch was refused
        raise_rpc_error(body.get("error"))
    if not isinstance(body, list):
        raise BadAnswer("unexpected JSON-RPC batch answer (not an array)")
    by_id = {r.get("id"): r for r in body if isinstance(r, dict)}
    return [answer(by_id[p["id"]]) if p["id"] in by_id
            else BadAnswer(f"no answer for call {p['id']} ({p['method']})")
            for p in payload]


# ---------------------------------------------------------------- failover and retries


class Endpoints:
    """Node URLs in failover order, starting with the one that last worked."""

    def __init__(self, urls: str | Sequence[str] | None) -> None:
        if urls is None:
            urls = [DEFAULT_URL]
        elif isinstance(urls, str):
            urls = [urls]
        self.urls = [u.rstrip("/") for u in urls]
        if not self.urls:
            raise ValueError("give at least one node URL")
        self._current = 0

    def order(self) -> list[str]:
        return self.urls[self._current:] + self.urls[: self._current]

    def worked(self, url: str) -> None:
        self._current = self.urls.index(url)


def retry_status(status: int) -> bool:
    """An HTTP status that says "ask another node" (a server error, not 503 overload, whose
    JSON-RPC body says why)."""
    return status >= 500 and status != 503


def backoff(attempt: int) -> float:
    """Pause after failover round `attempt` (0-based) found no node."""
    return min(0.1 * 2**attempt, 1.0)


def retry_submit(exc: ClientError) -> bool:
    """Send the SAME signed tx again (to the next node) after this failure? Yes when no node
    answered or the node did not see the commit in time; no when it refused the tx
    (TxRejected, BadSignature) or failed otherwise."""
    if isinstance(exc, NoNodeAvailable):
        return True
    return isinstance(exc, RPCCallError) and exc.code == E.TIMEOUT


def load_refusal_wait(exc: ClientError) -> float | None:
    """Seconds to wait before sending the SAME signed tx again when the node refused it for
    load (its pool, its rates or this client's pending quota: `data.retry_after`), else None.
    The tx was not admitted, so sending it again cannot execute it twice."""
    if not isinstance(exc, RPCCallError) or exc.code not in (E.TX_REJECTED, E.CLIENT_QUOTA):
        return None
    wait = exc.data.get("retry_after") if isinstance(exc.data, dict) else None
    return float(wait) if isinstance(wait, int | float) and 0 < wait <= 60 else None


def load_refused(answers: Sequence[Any]) -> tuple[list[int], float]:
    """Of one batch's answers (results or ClientErrors): the indexes refused for load, to be
    sent again (the same signed txs), and how long to wait first (their longest
    `retry_after`; 0.0 when none was)."""
    again: list[int] = []
    pause = 0.0
    for i, a in enumerate(answers):
        wait = load_refusal_wait(a) if isinstance(a, ClientError) else None
        if wait is not None:
            again.append(i)
            pause = max(pause, wait)
    return again, pause


def keepalive_interval(ttl: float, every: float | None) -> float:
    return every or max(ttl / 3, 0.05)


# ---------------------------------------------------------------- chain info and proofs


@dataclass(frozen=True)
class ChainInfo:
    chain_id: str
    domain: bytes
    validator_keys: tuple[bytes, ...]

    @property
    def f(self) -> int:
        return (len(self.validator_keys) - 1) // 3

    @property
    def quorum(self) -> int:
        return 2 * self.f + 1

    @cached_property
    def _auth(self) -> Authenticator:
        return Authenticator(self.domain, _NoSigner(), _OnceVerifier(), self.validator_keys)

    @cached_property
    def _config(self) -> Config:
        try:
            return Config(n=len(self.validator_keys))
        except ValueError as exc:
            raise VerificationError(f"not a validator set: {exc}") from None


def chain_info_from(status: dict[str, Any], validators: dict[str, Any]) -> ChainInfo:
    chain_id = status.get("chain_id") or validators.get("chain_id")
    if not isinstance(chain_id, str) or not chain_id:
        raise VerificationError("node status has no chain_id")
    vals = validators.get("validators") if isinstance(validators, dict) else None
    if not isinstance(vals, list) or not vals:
        raise VerificationError("node returned no validator set")
    try:
        keys = tuple(bytes.fromhex(v["public_key"]) for v in sorted(vals, key=lambda v: v["index"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"malformed validator set: {exc}") from None
    return ChainInfo(chain_id, chain_id.encode("utf-8"), keys)


def verify_commit_certificate(
    tx_hash: bytes, commit: Any, chain: ChainInfo, height: int | None = None
) -> int:
    """Check that `commit` (the JSON `commit` object of a tx/block) proves `tx_hash` was
    committed: the pre-prepare's digest covers the tx and 2f+1 distinct validators signed
    Commits for (view, seq, digest) (`consensus.certificates.verify_committed_block`; commits
    that do not count are left out first). Returns the height (seq). Raises
    VerificationError."""
    if not isinstance(commit, dict):
        raise VerificationError("no commit certificate in the answer")
    try:
        pp = decode(base64.b64decode(commit["pre_prepare"], validate=True))
        commits = [decode(base64.b64decode(c, validate=True)) for c in commit["commits"]]
    except (KeyError, TypeError, ValueError, DecodeError) as exc:
        raise VerificationError(f"undecodable commit certificate: {exc}") from None
    if not isinstance(pp, PrePrepare):
        raise VerificationError("certificate's pre_prepare is not a PrePrepare")
    auth = chain._auth
    valid: dict[int, Commit] = {}
    for c in commits:
        if (
            isinstance(c, Commit) and (c.view, c.seq, c.digest) == (pp.view, pp.seq, pp.digest)
            and c.replica not in valid and auth.verify(c)
        ):
            valid[c.replica] = c
    if len(valid) < chain.quorum:
        raise VerificationError(
            f"commit certificate has {len(valid)} valid signatures, needs {chain.quorum}"
        )
    reason = verify_committed_block(chain._config, auth, CommittedBlock(pp, tuple(valid.values())))
    if reason:
        raise VerificationError(reason)
    if tx_hash not in {request_digest(r) for r in pp.requests}:
        raise VerificationError("the certified block does not contain this tx")
    if height is not None and pp.seq != height:
        raise VerificationError(f"certificate is for height {pp.seq}, answer says {height}")
    return pp.seq


class _NoSigner:
    public_key = b""

    def sign(self, data: bytes) -> bytes:  # pragma: no cover - never used for verifying
        raise RuntimeError("verification only")


class _OnceVerifier(Ed25519Verifier):
    """Ed25519 that remembers its last verdicts: `verify_commit_certificate` picks the valid
    commits, then `consensus.certificates` checks them again without paying twice."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[bytes, bytes, bytes], bool] = {}

    def verify(self, public_key: bytes, data: bytes, sig: bytes) -> bool:
        k = (public_key, data, sig)
        ok = self._seen.get(k)
        if ok is None:
            if len(self._seen) >= 256:
                self._seen.clear()
            ok = self._seen[k] = super().verify(public_key, data, sig)
        return ok


def matching_key(tx: dict[str, Any]) -> tuple:
    """What f+1 nodes' answers for one tx must agree on."""
    return (tx.get("hash"), tx.get("height"), tx.get("code"), tx.get("result_raw"))


def accept_commit(verify: str, chain: ChainInfo | None, tx_hash: bytes, res: dict[str, Any]
                  ) -> dict[str, Any] | None:
    """The commit answer, verified as `verify` asks; None if it needs f+1 matching replies
    (verify="replies", or a missing/invalid certificate)."""
    if verify == "none":
        return res
    if res.get("hash") != tx_hash.hex():
        raise VerificationError("node answered for a different tx hash")
    if verify == "replies":
        return None
    assert chain is not None
    try:
        verify_commit_certificate(tx_hash, res.get("commit"), chain, res.get("height"))
    except VerificationError:
        return None
    res["verified"] = "certificate"
    return res


def confirmed_by_replies(chain: ChainInfo, tx_hash: bytes, first: dict[str, Any],
                         answers: Sequence[Any]) -> dict[str, Any]:
    """`first`, verified by the `tx` answers of every node (errors in place) when f+1 of them
    match it; else VerificationError."""
    want = matching_key(first)
    agree = sum(1 for a in answers if isinstance(a, dict) and matching_key(a) == want)
    if agree < chain.f + 1:
        raise VerificationError(
            f"commit of {tx_hash.hex()} not verified: no valid certificate and only {agree} "
            f"matching replies (need {chain.f + 1})")
    first["verified"] = f"{agree} matching replies"
    return first


# ---------------------------------------------------------------- params and results


def as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def kv_params(key: str | bytes, **extra: Any) -> dict[str, Any]:
    raw = as_bytes(key)
    try:
        params: dict[str, Any] = {"key": raw.decode("utf-8")}
    except UnicodeDecodeError:
        params = {"key": base64.b64encode(raw).decode(), "encoding": "base64"}
    params.update({k: v for k, v in extra.items() if v is not None})
    return params


def named(name: str | bytes, **extra: Any) -> dict[str, Any]:
    p = kv_params(name, **extra)
    p["name"] = p.pop("key")
    return p


def tx_status_params(tx: str | bytes | Request) -> dict[str, Any]:
    if isinstance(tx, Request):
        return {"tx": tx_param(tx)}
    return {"hash": tx.hex() if isinstance(tx, bytes) else tx}


def check_app_code(tx: dict[str, Any]) -> dict[str, Any]:
    if tx.get("code", 0) != 0:
        res = tx.get("result")
        msg = res.get("error") if isinstance(res, dict) else None
        raise TxFailed(f"tx failed: {tx.get('code_name', 'error')}"
                       + (f": {msg}" if msg else ""), tx["code"], tx)
    return tx


def lock_token(res: dict[str, Any]) -> int | None:
    r = res.get("result", {})
    if isinstance(r, dict) and r.get("acquired"):
        return int(r["token"])
    return None


def read_result(res: dict[str, Any]) -> dict[str, Any]:
    """A linearizable read's tx result (app range) shaped like kv_get."""
    r = res.get("result", {})
    kvs = r.get("kvs", []) if isinstance(r, dict) else []
    first = kvs[0] if kvs else None
    return {
        "key": first.get("key") if first else None,
        "value": first.get("value") if first else None,
        "found": first is not None,
        "revision": r.get("revision", 0) if isinstance(r, dict) else 0,
        "mod_revision": first.get("mod_revision", 0) if first else 0,
        "create_revision": first.get("create_revision", 0) if first else 0,
        "version": first.get("version", 0) if first else 0,
        "height": res.get("height"),
        "consistency": "linearizable",
    }


# ---------------------------------------------------------------- WebSocket subscriptions


def ws_url(url: str) -> str:
    return ("ws" + url[4:] if url.startswith("http") else url) + "/websocket"


def subscribe_request(topic: str, prefix: str | bytes | None = None,
                      from_revision: int | None = None, from_height: int | None = None
                      ) -> str:
    """The `subscribe` call (JSON text) for `topic` ("kv": keys under `prefix`; "events",
    "blocks": everything) from a revision or height."""
    if prefix is None:
        p = {k: v for k, v in (("from_revision", from_revision), ("from_height", from_height))
             if v is not None}
    else:
        p = kv_params(prefix, from_revision=from_revision, from_height=from_height)
        p["prefix"] = p.pop("key")
    p["topic"] = topic
    return encode_json(request("subscribe", p)).decode()


def sub_message(msg: Any) -> dict[str, Any] | None:
    """A subscription message's result (None for anything else); raises RPCCallError for an
    error answer, SubscriptionClosed when the server closed the subscription."""
    if not isinstance(msg, dict):
        return None
    if "error" in msg:
        raise_rpc_error(msg["error"])
    if msg.get("method") == "subscription_closed":
        p = msg.get("params", {})
        raise SubscriptionClosed(f"subscription closed by the server: {p.get('reason')}",
                                 p.get("code"), p)
    if msg.get("method") == "subscription":
        return msg["params"]["result"]
    return None
