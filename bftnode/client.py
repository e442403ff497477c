"""The Python client of a bftnode chain: `Client` (sync) and `AsyncClient` (httpx; trio or
asyncio), both over JSON-RPC 2.0.

Owns: the client key file (Ed25519 seed, created mode 0600 on first use), request_seq
allocation (monotonic, reserved in blocks in `<key>.seq` next to the key file, starting from a
time-based value so a lost seq file never reuses a seq), signing txs for the chain's domain,
retrying safely (the SAME signed tx, hence the same request_seq: the chain executes it at most
once and answers a replay with the original result), failover between several node URLs, and
trusting a commit only with a verified commit certificate (2f+1 valid Commits over the block's
digest whose pre-prepare contains the tx, checked against the validator set from `validators`)
or, failing that, f+1 matching replies from different nodes.
High-level helpers: put/get/delete/range/txn, leases (with a keepalive context manager), locks
(context manager yielding the fencing token), elections, watch over WebSocket.

Imports: stdlib, httpx, httpx_ws, consensus, bftnode.keys, bftnode.app.ops, bftnode.rpc.errors.
Must not import trio at module level, storage, network or the runtime.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from consensus import (
    Authenticator,
    Commit,
    Ed25519Verifier,
    PrePrepare,
    Request,
    batch_digest,
    decode,
    encode,
    request_digest,
    sign_request,
)
from consensus.errors import DecodeError

from .keys import KeyFileError, NodeKey, generate_key_file, load_key_file
from .rpc import errors as E

DEFAULT_URL = "http://127.0.0.1:26657"
SEQ_RESERVE = 256


# ---------------------------------------------------------------- errors


class ClientError(Exception):
    """Base of every client failure; `code` is the JSON-RPC error code when there is one."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


class RPCCallError(ClientError):
    """The node answered with a JSON-RPC error."""


class TxRejected(RPCCallError):
    """The node refused the tx before ordering (bad op, stale request_seq, pool full...)."""


class TxTimeout(ClientError):
    """No node confirmed the commit in time; the tx may still commit (check with `tx`)."""


class BadSignature(RPCCallError):
    pass


class AppQueryError(RPCCallError):
    """An application read failed (data carries the app code/name)."""


class VerificationError(ClientError):
    """A node's answer could not be verified (bad or missing certificate, disagreeing nodes)."""


class NoNodeAvailable(ClientError):
    """Every node URL failed at the transport level."""


class TxFailed(ClientError):
    """The tx committed but the application returned a non-zero code."""

    def __init__(self, message: str, code: int, result: dict[str, Any]) -> None:
        super().__init__(message, code, result)
        self.result = result


_BY_CODE: dict[int, type[RPCCallError]] = {
    E.TX_REJECTED: TxRejected, E.BAD_SIGNATURE: BadSignature, E.APP_ERROR: AppQueryError,
}


def _raise_rpc_error(err: Any) -> None:
    if not isinstance(err, dict):
        raise RPCCallError(f"malformed error object: {err!r}")
    code = err.get("code")
    cls = _BY_CODE.get(code, RPCCallError) if isinstance(code, int) else RPCCallError
    raise cls(str(err.get("message", "")), code, err.get("data"))


# ---------------------------------------------------------------- keys and request_seq


def default_key_path() -> Path:
    home = os.environ.get("BFTNODE_HOME")
    base = Path(home) if home else Path.home() / ".bftnode"
    return base / "client.key"


def load_or_create_key(path: str | os.PathLike | None = None) -> NodeKey:
    """Load the client key, creating it (mode 0600) on first use."""
    p = Path(path) if path is not None else default_key_path()
    if not p.exists():
        try:
            return generate_key_file(p)
        except KeyFileError:
            if not p.exists():
                raise
            # another process created it at the same moment: load theirs
    return load_key_file(p)


class SeqAllocator:
    """Monotonic request_seqs for one client key, safe across restarts and processes.

    Reserves SEQ_RESERVE values at a time in `<key>.seq` under an flock (one fsync per
    block); unused values of a reservation are skipped, never reused. The first value ever is
    time-based (microseconds), so deleting the seq file cannot make an old seq come back.
    `path=None` keeps it in memory (time-based start)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self._next = 0
        self._limit = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            if self._next >= self._limit:
                self._reserve()
            v = self._next
            self._next += 1
            return v

    def _reserve(self) -> None:
        floor = time.time_ns() // 1000
        if self.path is None:
            start = max(self._limit, floor)
            self._next, self._limit = start, start + SEQ_RESERVE
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64).decode("ascii", "replace").strip()
            stored = int(raw) if raw.isdigit() else 0
            start = max(stored, self._limit, 0 if stored else floor)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{start + SEQ_RESERVE}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the flock
        self._next, self._limit = start, start + SEQ_RESERVE


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
    Commits for (view, seq, digest). Returns the height (seq). Raises VerificationError."""
    if not isinstance(commit, dict):
        raise VerificationError("no commit certificate in the answer")
    try:
        pp = decode(base64.b64decode(commit["pre_prepare"], validate=True))
        commits = [decode(base64.b64decode(c, validate=True)) for c in commit["commits"]]
    except (KeyError, TypeError, ValueError, DecodeError) as exc:
        raise VerificationError(f"undecodable commit certificate: {exc}") from None
    if not isinstance(pp, PrePrepare):
        raise VerificationError("certificate's pre_prepare is not a PrePrepare")
    if batch_digest(pp.time_ms, pp.requests) != pp.digest:
        raise VerificationError("pre-prepare digest does not match its requests")
    if tx_hash not in {request_digest(r) for r in pp.requests}:
        raise VerificationError("the certified block does not contain this tx")
    if height is not None and pp.seq != height:
        raise VerificationError(f"certificate is for height {pp.seq}, answer says {height}")
    auth = Authenticator(chain.domain, _NoSigner(), Ed25519Verifier(), chain.validator_keys)
    signers: set[int] = set()
    for c in commits:
        if (
            isinstance(c, Commit) and c.view == pp.view and c.seq == pp.seq
            and c.digest == pp.digest and c.replica not in signers and auth.verify(c)
        ):
            signers.add(c.replica)
    if len(signers) < chain.quorum:
        raise VerificationError(
            f"commit certificate has {len(signers)} valid signatures, needs {chain.quorum}"
        )
    return pp.seq


class _NoSigner:
    public_key = b""

    def sign(self, data: bytes) -> bytes:  # pragma: no cover - never used for verifying
        raise RuntimeError("verification only")


def _b(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _matching_key(tx: dict[str, Any]) -> tuple:
    return (tx.get("hash"), tx.get("height"), tx.get("code"), tx.get("result_raw"))


def _check_app_code(tx: dict[str, Any]) -> dict[str, Any]:
    if tx.get("code", 0) != 0:
        res = tx.get("result")
        msg = res.get("error") if isinstance(res, dict) else None
        raise TxFailed(f"tx failed: {tx.get('code_name', 'error')}"
                       + (f": {msg}" if msg else ""), tx["code"], tx)
    return tx


def _lock_token(res: dict[str, Any]) -> int | None:
    r = res.get("result", {})
    if isinstance(r, dict) and r.get("acquired"):
        return int(r["token"])
    return None


# ---------------------------------------------------------------- shared core


class _Core:
    def __init__(
        self, urls: str | Sequence[str] | None, key: str | os.PathLike | NodeKey | None,
        timeout: float, verify: str, seq_file: str | os.PathLike | None | bool,
        chain: ChainInfo | None,
    ) -> None:
        if urls is None:
            urls = [DEFAULT_URL]
        elif isinstance(urls, str):
            urls = [urls]
        self.urls = [u.rstrip("/") for u in urls]
        if not self.urls:
            raise ValueError("give at least one node URL")
        if verify not in ("certificate", "replies", "none"):
            raise ValueError("verify must be 'certificate', 'replies' or 'none'")
        if isinstance(key, NodeKey):
            self.key = key
            seq_path = None
        else:
            key_path = Path(key) if key is not None else default_key_path()
            self.key = load_or_create_key(key_path)
            seq_path = key_path.with_name(key_path.name + ".seq")
        if seq_file is False:
            seq_path = None
        elif seq_file not in (None, True):
            seq_path = Path(seq_file)  # type: ignore[arg-type]
        self.seqs = SeqAllocator(seq_path)
        self.signer = self.key.signer()
        self.timeout = timeout
        self.verify = verify
        self.chain = chain
        self._current = 0
        self._ids = 0

    @property
    def client_id(self) -> bytes:
        return self.key.public_key

    def payload(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        return {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}

    def order(self) -> list[str]:
        """URLs starting with the one that last worked."""
        return self.urls[self._current:] + self.urls[: self._current]

    def worked(self, url: str) -> None:
        self._current = self.urls.index(url)

    def sign(self, op: bytes, valid_until: int = 0, request_seq: int | None = None) -> Request:
        assert self.chain is not None
        seq = self.seqs.next() if request_seq is None else request_seq
        req = Request(self.client_id, seq, op, valid_until)
        return sign_request(self.chain.domain, self.signer, req)

    @staticmethod
    def parse(resp: httpx.Response) -> Any:
        try:
            body = resp.json()
        except (json.JSONDecodeError, ValueError):
            raise RPCCallError(f"HTTP {resp.status_code}: not a JSON-RPC answer") from None
        if not isinstance(body, dict):
            raise RPCCallError("unexpected JSON-RPC answer (not an object)")
        if "error" in body:
            _raise_rpc_error(body["error"])
        return body.get("result")

    def accept_commit(self, tx_hash: bytes, res: dict[str, Any]) -> dict[str, Any] | None:
        """Verified commit answer, or None if the certificate is missing/invalid (the caller
        then asks for f+1 matching replies)."""
        if self.verify == "none":
            return res
        if res.get("hash") != tx_hash.hex():
            raise VerificationError("node answered for a different tx hash")
        if self.verify == "replies":
            return None
        assert self.chain is not None
        try:
            verify_commit_certificate(tx_hash, res.get("commit"), self.chain, res.get("height"))
        except VerificationError:
            return None
        res["verified"] = "certificate"
        return res

    def tx_params(self, req: Request, timeout: float) -> dict[str, Any]:
        return {"tx": base64.b64encode(encode(req)).decode("ascii"), "timeout": timeout}


def _batch_results(body: Any, payload: list[dict[str, Any]]) -> list[Any]:
    """Results of a JSON-RPC batch in request order; a failed call becomes its RPCCallError."""
    if isinstance(body, dict):  # the whole batch was refused
        _raise_rpc_error(body.get("error"))
    by_id = {r.get("id"): r for r in body}
    out: list[Any] = []
    for p in payload:
        r = by_id.get(p["id"], {})
        if "error" in r:
            try:
                _raise_rpc_error(r["error"])
            except RPCCallError as exc:
                out.append(exc)
        else:
            out.append(r.get("result"))
    return out


def _kv_params(key: str | bytes, **extra: Any) -> dict[str, Any]:
    raw = _b(key)
    try:
        text = raw.decode("utf-8")
        params: dict[str, Any] = {"key": text}
    except UnicodeDecodeError:
        params = {"key": base64.b64encode(raw).decode(), "encoding": "base64"}
    params.update({k: v for k, v in extra.items() if v is not None})
    return params


def _tx_status_params(tx: str | bytes | Request) -> dict[str, Any]:
    if isinstance(tx, Request):
        return {"tx": base64.b64encode(encode(tx)).decode("ascii")}
    return {"hash": tx.hex() if isinstance(tx, bytes) else tx}


def _read_result(res: dict[str, Any]) -> dict[str, Any]:
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


# ---------------------------------------------------------------- sync client


class Client:
    """Synchronous client. `urls`: one URL or several (failover). `key`: key file path
    (created on first use; default $BFTNODE_HOME/client.key or ~/.bftnode/client.key) or a
    NodeKey. `verify`: "certificate" (default), "replies" (f+1 matching) or "none"."""

    def __init__(
        self, urls: str | Sequence[str] | None = None, key: str | os.PathLike | NodeKey | None =
        None, *, timeout: float = 10.0, verify: str = "certificate",
        seq_file: str | os.PathLike | None | bool = None, chain: ChainInfo | None = None,
        retries: int = 2,
    ) -> None:
        self._core = _Core(urls, key, timeout, verify, seq_file, chain)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout + 5.0, connect=3.0))
        self.retries = retries

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def client_id(self) -> bytes:
        return self._core.client_id

    # -- transport
    def call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC call with failover; JSON-RPC errors raise RPCCallError subclasses."""
        return self._call_at(None, method, params)

    def _call_at(self, url: str | None, method: str, params: dict[str, Any],
                 retries: int | None = None) -> Any:
        """Call `url` (or every URL in failover order), `retries` extra rounds."""
        last: Exception | None = None
        rounds = (self.retries if retries is None else retries) + 1
        for attempt in range(rounds):
            for u in [url] if url else self._core.order():
                try:
                    resp = self._http.post(u + "/", json=self._core.payload(method, params))
                except httpx.HTTPError as exc:
                    last = exc
                    continue
                if resp.status_code >= 500 and resp.status_code != 503:
                    last = RPCCallError(f"{u}: HTTP {resp.status_code}")
                    continue
                if not url:
                    self._core.worked(u)
                return self._core.parse(resp)
            if attempt + 1 < rounds:
                time.sleep(min(0.1 * 2**attempt, 1.0))
        raise NoNodeAvailable(f"no node answered {method!r}: {last}")

    def batch(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """A JSON-RPC batch array; returns results (or RPCCallError instances) in order."""
        payload = [self._core.payload(m, p) for m, p in calls]
        for u in self._core.order():
            try:
                resp = self._http.post(u + "/", json=payload)
            except httpx.HTTPError:
                continue
            return _batch_results(resp.json(), payload)
        raise NoNodeAvailable("no node answered the batch")

    def chain_info(self) -> ChainInfo:
        if self._core.chain is None:
            self._core.chain = chain_info_from(self.call("status"), self.call("validators"))
        return self._core.chain

    # -- txs
    def sign(self, op: bytes, valid_until: int = 0) -> Request:
        self.chain_info()
        return self._core.sign(op, valid_until)

    def submit(self, req: Request, timeout: float | None = None) -> dict[str, Any]:
        """broadcast_tx_commit with failover; retries send the SAME signed tx (same
        request_seq), so the chain executes it at most once. Returns a verified answer."""
        timeout = self._core.timeout if timeout is None else timeout
        tx_hash = request_digest(req)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for u in self._core.order():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    res = self._call_at(u, "broadcast_tx_commit",
                                        self._core.tx_params(req, max(0.1, min(left, 60.0))),
                                        retries=0)
                except (NoNodeAvailable, TxRejected, BadSignature) as exc:
                    if isinstance(exc, NoNodeAvailable):
                        last = exc
                        continue
                    raise
                except RPCCallError as exc:
                    if exc.code == E.TIMEOUT:
                        last = exc
                        continue
                    raise
                ok = self._core.accept_commit(tx_hash, res)
                if ok is None:
                    ok = self._confirm_by_replies(tx_hash, res)
                self._core.worked(u)
                return ok
            time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))  # no node answered
        raise TxTimeout(f"tx {tx_hash.hex()} not confirmed within {timeout:g}s: {last}",
                        data={"hash": tx_hash.hex()})

    def _confirm_by_replies(self, tx_hash: bytes, first: dict[str, Any]) -> dict[str, Any]:
        chain = self.chain_info()
        want = _matching_key(first)
        agree = 0
        for u in self._core.urls:
            with contextlib.suppress(ClientError):
                if _matching_key(self._call_at(u, "tx", {"hash": tx_hash.hex()}, 0)) == want:
                    agree += 1
        if agree < chain.f + 1:
            raise VerificationError(
                f"commit of {tx_hash.hex()} not verified: no valid certificate and only {agree} "
                f"matching replies (need {chain.f + 1})")
        first["verified"] = f"{agree} matching replies"
        return first

    def commit_op(self, op: bytes, timeout: float | None = None, check: bool = True
                  ) -> dict[str, Any]:
        """Sign `op`, submit it, wait for the verified commit; raises TxFailed on an app
        error when `check`."""
        res = self.submit(self.sign(op), timeout)
        return _check_app_code(res) if check else res

    def broadcast(self, req: Request, mode: str = "sync") -> dict[str, Any]:
        return self.call(f"broadcast_tx_{mode}",
                         tx=base64.b64encode(encode(req)).decode("ascii"))

    # -- reads
    def status(self) -> dict[str, Any]:
        return self.call("status")

    def block(self, height: int | None = None) -> dict[str, Any]:
        return self.call("block", **({"height": height} if height else {}))

    def tx(self, tx_hash: str | bytes, prove: bool = False) -> dict[str, Any]:
        h = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        return self.call("tx", hash=h, prove=prove)

    def tx_status(self, tx: str | bytes | Request, url: str | None = None) -> dict[str, Any]:
        """{status: COMMITTED|PENDING|EXPIRED|UNKNOWN, committed, height, ...} from one node
        (`url`, default failover). Pass the signed Request to let any node judge expiry."""
        return self._call_at(url, "tx_status", _tx_status_params(tx))

    def get(self, key: str | bytes, consistency: str = "serializable",
            min_revision: int | None = None, revision: int | None = None) -> dict[str, Any]:
        """{value, revision, ...}. consistency="linearizable" orders the read through
        consensus (a signed range tx) and verifies its commit certificate."""
        if consistency == "linearizable":
            from .app import ops

            return _read_result(self.commit_op(ops.range_(_b(key), revision=revision or 0)))
        return self.call("kv_get", **_kv_params(key, min_revision=min_revision,
                                                revision=revision))

    def range(self, prefix: str | bytes = b"", limit: int = 0, keys_only: bool = False,
              revision: int | None = None) -> dict[str, Any]:
        return self.call("kv_range", **_kv_params(prefix, prefix=True, limit=limit or None,
                                                  keys_only=keys_only or None,
                                                  revision=revision))

    # -- writes
    def put(self, key: str | bytes, value: str | bytes, lease: int = 0) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.put(_b(key), _b(value), lease))

    def delete(self, key: str | bytes, prefix: bool = False) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.delete(_b(key), prefix))

    def txn(self, compare: Sequence[Any] = (), success: Sequence[Any] = (),
            failure: Sequence[Any] = ()) -> dict[str, Any]:
        """Build with bftnode.app.ops.compare / put_op / delete_op / range_op."""
        from .app import ops

        return self.commit_op(ops.txn(tuple(compare), tuple(success), tuple(failure)))

    # -- leases
    def lease_grant(self, ttl: float) -> int:
        from .app import ops

        return int(self.commit_op(ops.lease_grant(ttl=ttl))["result"]["id"])

    def lease_keepalive(self, lease_id: int) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.lease_keepalive(lease_id))

    def lease_revoke(self, lease_id: int) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.lease_revoke(lease_id))

    def lease_ttl(self, lease_id: int) -> dict[str, Any]:
        return self.call("lease_ttl", id=lease_id)

    @contextlib.contextmanager
    def lease(self, ttl: float, keepalive_every: float | None = None) -> Iterator[int]:
        """Grant a lease and keep it alive in a background thread until the block exits
        (then revoke it). A failed keepalive is retried until the lease is gone."""
        lease_id = self.lease_grant(ttl)
        stop = threading.Event()
        every = keepalive_every or max(ttl / 3, 0.05)
        errors: list[Exception] = []

        def keep() -> None:
            with Client(self._core.urls, self._core.key, timeout=self._core.timeout,
                        verify=self._core.verify, chain=self._core.chain) as c:
                c._core.seqs = self._core.seqs  # one monotonic seq space per key
                while not stop.wait(every):
                    try:
                        c.lease_keepalive(lease_id)
                    except TxFailed as exc:  # the lease is gone: nothing left to keep alive
                        errors.append(exc)
                        return
                    except ClientError as exc:
                        errors.append(exc)

        t = threading.Thread(target=keep, name=f"lease-{lease_id}-keepalive", daemon=True)
        t.start()
        try:
            yield lease_id
        finally:
            stop.set()
            t.join()
            with contextlib.suppress(ClientError):
                self.lease_revoke(lease_id)

    # -- locks
    def lock_acquire(self, name: str | bytes, lease: int, wait: bool = True,
                     timeout: float = 30.0) -> int:
        """Take the lock (queueing FIFO when `wait`); returns the fencing token."""
        from .app import ops

        op = ops.lock_acquire(_b(name), lease) if wait else ops.lock_try_acquire(_b(name), lease)
        res = self.commit_op(op)
        token = _lock_token(res)
        if token is not None:
            return token
        if not wait:
            raise TxFailed(f"lock {name!r} is held", 6, res)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # queued: wait until the chain grants it to us
            st = self.call("lock_status", **_named(name, lease=lease))
            if st.get("held_by_lease"):
                return int(st["holder"]["token"])
            if not st.get("position"):
                raise TxFailed(f"no longer queued for lock {name!r} (lease expired?)", 2, st)
            time.sleep(0.05)
        with contextlib.suppress(ClientError):
            self.commit_op(ops.lock_cancel(_b(name), lease))
        raise TxTimeout(f"lock {name!r} not granted within {timeout:g}s")

    def lock_release(self, name: str | bytes, token: int) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.lock_release(_b(name), token))

    def lock_status(self, name: str | bytes, token: int | None = None) -> dict[str, Any]:
        return self.call("lock_status", **_named(name, token=token))

    @contextlib.contextmanager
    def lock(self, name: str | bytes, ttl: float = 10.0, timeout: float = 30.0
             ) -> Iterator[int]:
        """Hold lock `name` under a kept-alive lease; yields the fencing token. Pass the token
        to whatever the lock protects: a stale holder's writes are then refused."""
        with self.lease(ttl) as lease_id:
            token = self.lock_acquire(name, lease_id, timeout=timeout)
            try:
                yield token
            finally:
                with contextlib.suppress(ClientError):
                    self.lock_release(name, token)

    # -- elections
    def campaign(self, name: str | bytes, lease: int, value: str | bytes = b"",
                 timeout: float = 30.0) -> int:
        from .app import ops

        res = self.commit_op(ops.campaign(_b(name), lease, _b(value)))
        token = _lock_token(res)
        deadline = time.monotonic() + timeout
        while token is None and time.monotonic() < deadline:
            st = self.call("election_leader", **_named(name))
            if st.get("lease") == lease:
                return int(st["token"])
            time.sleep(0.05)
        if token is None:
            raise TxTimeout(f"not elected for {name!r} within {timeout:g}s")
        return token

    def proclaim(self, name: str | bytes, token: int, value: str | bytes) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.proclaim(_b(name), token, _b(value)))

    def resign(self, name: str | bytes, token: int) -> dict[str, Any]:
        from .app import ops

        return self.commit_op(ops.resign(_b(name), token))

    def leader(self, name: str | bytes) -> dict[str, Any]:
        return self.call("election_leader", **_named(name))

    # -- watch
    def watch(self, prefix: str | bytes, from_revision: int | None = None,
              from_height: int | None = None, topic: str = "kv") -> Iterator[dict[str, Any]]:
        """Yield app events for keys under `prefix` (over WebSocket). Raises ClientError when
        the server closes the subscription (e.g. this reader was too slow)."""
        from httpx_ws import connect_ws

        params = _sub_params(topic, prefix, from_revision, from_height)
        url = _ws_url(self._core.order()[0])
        with connect_ws(url, self._http, max_message_size_bytes=8 * 1024 * 1024) as ws:
            ws.send_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                     "params": params}))
            while True:
                msg = json.loads(ws.receive_text())
                ev = _sub_message(msg)
                if ev is not None:
                    yield ev


def _named(name: str | bytes, **extra: Any) -> dict[str, Any]:
    p = _kv_params(name, **extra)
    p["name"] = p.pop("key")
    return p


def _ws_url(url: str) -> str:
    return ("ws" + url[4:] if url.startswith("http") else url) + "/websocket"


def _sub_params(topic: str, prefix: str | bytes, from_revision: int | None,
                from_height: int | None) -> dict[str, Any]:
    p = _kv_params(prefix, from_revision=from_revision, from_height=from_height)
    p["prefix"] = p.pop("key")
    p["topic"] = topic
    return p


def _sub_message(msg: Any) -> dict[str, Any] | None:
    if not isinstance(msg, dict):
        return None
    if "error" in msg:
        _raise_rpc_error(msg["error"])
    if msg.get("method") == "subscription_closed":
        p = msg.get("params", {})
        raise ClientError(f"subscription closed by the server: {p.get('reason')}",
                          p.get("code"), p)
    if msg.get("method") == "subscription":
        return msg["params"]["result"]
    return None


# ---------------------------------------------------------------- async client


class AsyncClient:
    """The async twin of `Client` (httpx.AsyncClient; works under trio and asyncio)."""

    def __init__(
        self, urls: str | Sequence[str] | None = None, key: str | os.PathLike | NodeKey | None =
        None, *, timeout: float = 10.0, verify: str = "certificate",
        seq_file: str | os.PathLike | None | bool = None, chain: ChainInfo | None = None,
        retries: int = 2, max_connections: int = 100,
    ) -> None:
        self._core = _Core(urls, key, timeout, verify, seq_file, chain)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout + 5.0, connect=3.0),
            limits=httpx.Limits(max_connections=max_connections),
        )
        self.retries = retries

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def client_id(self) -> bytes:
        return self._core.client_id

    async def _sleep(self, seconds: float) -> None:
        import sniffio

        if sniffio.current_async_library() == "trio":
            import trio

            await trio.sleep(seconds)
        else:
            import asyncio

            await asyncio.sleep(seconds)

    async def call(self, method: str, **params: Any) -> Any:
        return await self._call_at(None, method, params)

    async def _call_at(self, url: str | None, method: str, params: dict[str, Any],
                 retries: int | None = None) -> Any:
        """Call `url` (or every URL in failover order), `retries` extra rounds."""
        last: Exception | None = None
        rounds = (self.retries if retries is None else retries) + 1
        for attempt in range(rounds):
            for u in [url] if url else self._core.order():
                try:
                    resp = await self._http.post(u + "/", json=self._core.payload(method, params))
                except httpx.HTTPError as exc:
                    last = exc
                    continue
                if resp.status_code >= 500 and resp.status_code != 503:
                    last = RPCCallError(f"{u}: HTTP {resp.status_code}")
                    continue
                if not url:
                    self._core.worked(u)
                return self._core.parse(resp)
            if attempt + 1 < rounds:
                await self._sleep(min(0.1 * 2**attempt, 1.0))
        raise NoNodeAvailable(f"no node answered {method!r}: {last}")

    async def batch(self, calls: Sequence[tuple[str, dict[str, Any]]],
                    url: str | None = None) -> list[Any]:
        payload = [self._core.payload(m, p) for m, p in calls]
        for u in [url] if url else self._core.order():
            try:
                resp = await self._http.post(u + "/", json=payload)
            except httpx.HTTPError:
                continue
            return _batch_results(resp.json(), payload)
        raise NoNodeAvailable("no node answered the batch")

    async def chain_info(self) -> ChainInfo:
        if self._core.chain is None:
            self._core.chain = chain_info_from(await self.call("status"),
                                               await self.call("validators"))
        return self._core.chain

    async def sign(self, op: bytes, valid_until: int = 0) -> Request:
        await self.chain_info()
        return self._core.sign(op, valid_until)

    async def submit(self, req: Request, timeout: float | None = None) -> dict[str, Any]:
        timeout = self._core.timeout if timeout is None else timeout
        tx_hash = request_digest(req)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while deadline - time.monotonic() > 0:
            for u in self._core.order():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    res = await self._call_at(u, "broadcast_tx_commit",
                                              self._core.tx_params(req, max(0.1, min(left, 60))),
                                              retries=0)
                except NoNodeAvailable as exc:
                    last = exc
                    continue
                except (TxRejected, BadSignature):
                    raise
                except RPCCallError as exc:
                    if exc.code == E.TIMEOUT:
                        last = exc
                        continue
                    raise
                ok = self._core.accept_commit(tx_hash, res)
                if ok is None:
                    ok = await self._confirm_by_replies(tx_hash, res)
                self._core.worked(u)
                return ok
            await self._sleep(max(0.0, min(0.2, deadline - time.monotonic())))
        raise TxTimeout(f"tx {tx_hash.hex()} not confirmed within {timeout:g}s: {last}",
                        data={"hash": tx_hash.hex()})

    async def _confirm_by_replies(self, tx_hash: bytes, first: dict[str, Any]) -> dict[str, Any]:
        chain = await self.chain_info()
        want = _matching_key(first)
        agree = 0
        for u in self._core.urls:
            with contextlib.suppress(ClientError):
                got = await self._call_at(u, "tx", {"hash": tx_hash.hex()}, 0)
                if _matching_key(got) == want:
                    agree += 1
        if agree < chain.f + 1:
            raise VerificationError(
                f"commit of {tx_hash.hex()} not verified: no valid certificate and only {agree} "
                f"matching replies (need {chain.f + 1})")
        first["verified"] = f"{agree} matching replies"
        return first

    async def commit_op(self, op: bytes, timeout: float | None = None, check: bool = True
                        ) -> dict[str, Any]:
        res = await self.submit(await self.sign(op), timeout)
        return _check_app_code(res) if check else res

    async def status(self) -> dict[str, Any]:
        return await self.call("status")

    async def block(self, height: int | None = None) -> dict[str, Any]:
        return await self.call("block", **({"height": height} if height else {}))

    async def tx(self, tx_hash: str | bytes, prove: bool = False) -> dict[str, Any]:
        h = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        return await self.call("tx", hash=h, prove=prove)

    async def tx_status(self, tx: str | bytes | Request, url: str | None = None
                        ) -> dict[str, Any]:
        """As `Client.tx_status`."""
        return await self._call_at(url, "tx_status", _tx_status_params(tx))

    async def get(self, key: str | bytes, consistency: str = "serializable",
                  min_revision: int | None = None, revision: int | None = None
                  ) -> dict[str, Any]:
        if consistency == "linearizable":
            from .app import ops

            return _read_result(await self.commit_op(ops.range_(_b(key),
                                                                revision=revision or 0)))
        return await self.call("kv_get", **_kv_params(key, min_revision=min_revision,
                                                      revision=revision))

    async def range(self, prefix: str | bytes = b"", limit: int = 0, keys_only: bool = False,
                    revision: int | None = None) -> dict[str, Any]:
        return await self.call("kv_range", **_kv_params(prefix, prefix=True,
                                                        limit=limit or None,
                                                        keys_only=keys_only or None,
                                                        revision=revision))

    async def put(self, key: str | bytes, value: str | bytes, lease: int = 0) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.put(_b(key), _b(value), lease))

    async def delete(self, key: str | bytes, prefix: bool = False) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.delete(_b(key), prefix))

    async def txn(self, compare: Sequence[Any] = (), success: Sequence[Any] = (),
                  failure: Sequence[Any] = ()) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.txn(tuple(compare), tuple(success), tuple(failure)))

    async def lease_grant(self, ttl: float) -> int:
        from .app import ops

        return int((await self.commit_op(ops.lease_grant(ttl=ttl)))["result"]["id"])

    async def lease_keepalive(self, lease_id: int) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.lease_keepalive(lease_id))

    async def lease_revoke(self, lease_id: int) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.lease_revoke(lease_id))

    async def lease_ttl(self, lease_id: int) -> dict[str, Any]:
        return await self.call("lease_ttl", id=lease_id)

    @contextlib.asynccontextmanager
    async def lease(self, ttl: float, keepalive_every: float | None = None
                    ) -> AsyncIterator[int]:
        """Grant a lease and keep it alive from a background trio task (trio only)."""
        import trio

        lease_id = await self.lease_grant(ttl)
        every = keepalive_every or max(ttl / 3, 0.05)

        async def keep() -> None:
            while True:
                await trio.sleep(every)
                try:
                    await self.lease_keepalive(lease_id)
                except TxFailed:
                    return
                except ClientError:
                    continue

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep)
                try:
                    yield lease_id
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(ClientError):
                await self.lease_revoke(lease_id)

    async def lock_acquire(self, name: str | bytes, lease: int, wait: bool = True,
                           timeout: float = 30.0) -> int:
        from .app import ops

        op = ops.lock_acquire(_b(name), lease) if wait else ops.lock_try_acquire(_b(name), lease)
        res = await self.commit_op(op)
        token = _lock_token(res)
        if token is not None:
            return token
        if not wait:
            raise TxFailed(f"lock {name!r} is held", 6, res)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = await self.call("lock_status", **_named(name, lease=lease))
            if st.get("held_by_lease"):
                return int(st["holder"]["token"])
            if not st.get("position"):
                raise TxFailed(f"no longer queued for lock {name!r} (lease expired?)", 2, st)
            await self._sleep(0.05)
        with contextlib.suppress(ClientError):
            await self.commit_op(ops.lock_cancel(_b(name), lease))
        raise TxTimeout(f"lock {name!r} not granted within {timeout:g}s")

    async def lock_release(self, name: str | bytes, token: int) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.lock_release(_b(name), token))

    @contextlib.asynccontextmanager
    async def lock(self, name: str | bytes, ttl: float = 10.0, timeout: float = 30.0
                   ) -> AsyncIterator[int]:
        async with self.lease(ttl) as lease_id:
            token = await self.lock_acquire(name, lease_id, timeout=timeout)
            try:
                yield token
            finally:
                import trio

                with trio.CancelScope(shield=True), contextlib.suppress(ClientError):
                    await self.lock_release(name, token)

    async def leader(self, name: str | bytes) -> dict[str, Any]:
        return await self.call("election_leader", **_named(name))

    async def lock_status(self, name: str | bytes, token: int | None = None) -> dict[str, Any]:
        return await self.call("lock_status", **_named(name, token=token))

    async def campaign(self, name: str | bytes, lease: int, value: str | bytes = b"",
                       timeout: float = 30.0) -> int:
        """Campaign for leadership of `name` under `lease`; returns the leader token once
        elected (waits while another candidate leads)."""
        from .app import ops

        res = await self.commit_op(ops.campaign(_b(name), lease, _b(value)))
        token = _lock_token(res)
        deadline = time.monotonic() + timeout
        while token is None and time.monotonic() < deadline:
            st = await self.call("election_leader", **_named(name))
            if st.get("lease") == lease:
                return int(st["token"])
            await self._sleep(0.05)
        if token is None:
            raise TxTimeout(f"not elected for {name!r} within {timeout:g}s")
        return token

    async def proclaim(self, name: str | bytes, token: int, value: str | bytes
                       ) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.proclaim(_b(name), token, _b(value)))

    async def resign(self, name: str | bytes, token: int) -> dict[str, Any]:
        from .app import ops

        return await self.commit_op(ops.resign(_b(name), token))

    @contextlib.asynccontextmanager
    async def watch(self, prefix: str | bytes, from_revision: int | None = None,
                    from_height: int | None = None, topic: str = "kv"
                    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """`async with client.watch("jobs/") as events: async for ev in events: ...` — a
        context manager because the WebSocket runs background tasks (structured concurrency:
        they end with the block, not whenever a generator is garbage-collected)."""
        from httpx_ws import aconnect_ws

        params = _sub_params(topic, prefix, from_revision, from_height)
        url = _ws_url(self._core.order()[0])
        async with aconnect_ws(url, self._http, max_message_size_bytes=8 * 1024 * 1024) as ws:
            await ws.send_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                           "params": params}))

            async def events() -> AsyncIterator[dict[str, Any]]:
                while True:
                    ev = _sub_message(json.loads(await ws.receive_text()))
                    if ev is not None:
                        yield ev

            yield events()
