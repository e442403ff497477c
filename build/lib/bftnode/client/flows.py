"""The client's operations, written once, as sans-I/O generators over `core`.

`Core` holds one client's state (node URLs in failover order, key, request_seqs, chain info)
and implements every operation as a generator: it yields `core.Post` / `core.Sleep` and gets
the `Reply` back (or a `TransportFailure` thrown in). `Client` (sync.py) and `AsyncClient`
(aio.py) perform those effects with httpx.Client / httpx.AsyncClient, and each method named in
`PUBLIC` is generated on both from the generator of the same name (`expose`), so the two
cannot drift. Retries send the SAME signed tx (the same request_seq): the chain executes it at
most once and answers a replay with the original result. Imports: stdlib, consensus,
bftnode.app.ops (lazily), bftnode.client.{core,errors,keys}.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from consensus import Request, request_digest, sign_request

from ..keys import NodeKey
from . import core as C
from .core import ChainInfo, Flow, Post, Sleep, TransportFailure
from .errors import (
    AppQueryError,
    ClientError,
    NoNodeAvailable,
    RPCCallError,
    TxFailed,
    TxTimeout,
    VerificationError,
)
from .holds import Holds
from .keys import SeqAllocator, key_and_seq_path
from .outcomes import DEFAULT_VALID_BLOCKS, Horizon, wait_outcome
from .tls import http_verify
from .verify import MAX_STALE_S, ProofVerifier, chain_from_genesis, find_genesis

VERIFY_MODES = ("certificate", "replies", "none")


def _client_key(client: str | bytes) -> bytes:
    raw = bytes.fromhex(client) if isinstance(client, str) else bytes(client)
    if len(raw) != 32:
        raise ValueError("client must be a 32-byte public key (or 64 hex chars)")
    return raw


def _ops() -> Any:
    from ..app import ops  # deferred: importing the app is not needed to read the chain

    return ops


class Core:
    """One client's state and operations (generators; see the module docstring)."""

    def __init__(
        self, urls: str | Sequence[str] | None, key: str | os.PathLike | NodeKey | None, *,
        timeout: float, verify: str, seq_file: str | os.PathLike | None | bool,
        chain: ChainInfo | None, retries: int, clock: Callable[[], float] = time.monotonic,
        proofs: ProofVerifier | None = None, valid_blocks: int = DEFAULT_VALID_BLOCKS,
    ) -> None:
        self.horizon = Horizon(valid_blocks)  # default valid_until (docs/client.md)
        self.endpoints = C.Endpoints(urls)
        if verify not in VERIFY_MODES:
            raise ValueError("verify must be 'certificate', 'replies' or 'none'")
        self.key, seq_path = key_and_seq_path(key, seq_file)
        self.seqs = SeqAllocator(seq_path)
        self.signer = self.key.signer()
        self.timeout = timeout
        self.verify = verify
        self.chain = chain
        self.retries = retries
        self.clock = clock
        self.proofs = proofs  # verify every read's proof (a pinned validator set), or None
        self.rejected: list[tuple[str, VerificationError]] = []  # answers that failed it
        self._ids = 0

    @property
    def urls(self) -> list[str]:
        return self.endpoints.urls

    @property
    def client_id(self) -> bytes:
        return self.key.public_key

    # -- transport
    def call(self, method: str, **params: Any) -> Flow:
        """One JSON-RPC call with failover; JSON-RPC errors raise RPCCallError subclasses."""
        return (yield from self.call_at(None, method, params))

    def call_at(self, url: str | None, method: str, params: dict[str, Any],
                retries: int | None = None) -> Flow:
        """Call `url` (or every URL in failover order), `retries` extra rounds."""
        last: Exception | None = None
        rounds = (self.retries if retries is None else retries) + 1
        for attempt in range(rounds):
            for u in [url] if url else self.endpoints.order():
                self._ids += 1
                try:
                    reply = yield Post(u + "/", C.encode_json(C.request(method, params,
                                                                        self._ids)))
                except TransportFailure as exc:
                    last = exc
                    continue
                if C.retry_status(reply.status):
                    last = RPCCallError(f"{u}: HTTP {reply.status}")
                    continue
                if not url:
                    self.endpoints.worked(u)
                return C.parse_reply(reply)
            if attempt + 1 < rounds:
                yield Sleep(C.backoff(attempt))
        raise NoNodeAvailable(f"no node answered {method!r}: {last}")

    def read(self, method: str, params: dict[str, Any],
             check: Callable[[Any], Any] | None = None, url: str | None = None) -> Flow:
        """A read; with `proofs`, its answer verified by `check` (default: the app query
        re-run over the proof), failing over to the next node when a node's answer does not
        verify (or it cannot prove it: no certificate yet, an internal error). Raises the
        last VerificationError when no node's answer verified."""
        if self.proofs is None:
            return (yield from self.call_at(url, method, params))
        proofs = self.proofs
        check = check or (lambda res: proofs.app_read(method, params, res))
        last: ClientError | None = None
        for attempt in range(self.retries + 1):
            for u in [url] if url else self.endpoints.order():
                try:
                    res = yield from self.call_at(u, method, {**params, "prove": True}, 0)
                    out = check(res)
                except VerificationError as exc:
                    self.rejected.append((u, exc))
                    last = exc
                    continue
                except AppQueryError:
                    raise
                except (NoNodeAvailable, RPCCallError) as exc:
                    if isinstance(exc, RPCCallError) and exc.code == -32602:  # bad params
                        raise
                    last = exc if not isinstance(last, VerificationError) else last
                    continue
                if not url:
                    self.endpoints.worked(u)
                return out
            if attempt < self.retries and not isinstance(last, VerificationError):
                yield Sleep(C.backoff(attempt))
        assert last is not None
        raise last

    def batch(self, calls: Sequence[tuple[str, dict[str, Any]]], url: str | None = None
              ) -> Flow:
        """A JSON-RPC batch array to `url` (default: failover); returns results (or
        RPCCallError instances) in order."""
        payload = C.batch_request(calls)
        body = C.encode_json(payload)
        for u in [url] if url else self.endpoints.order():
            try:
                reply = yield Post(u + "/", body)
            except TransportFailure:
                continue
            return C.batch_results(reply.content, payload)
        raise NoNodeAvailable("no node answered the batch")

    def chain_info(self) -> Flow:
        if self.chain is None:
            status = yield from self.call("status")
            self.chain = C.chain_info_from(status, (yield from self.call("validators")))
        return self.chain

    # -- txs
    def sign(self, op: bytes, valid_until: int | None = None) -> Flow:
        """Sign `op` with the next request_seq. `valid_until` (the last height it may commit
        at; 0 = never expires) defaults to the latest known height + `valid_blocks`."""
        chain = yield from self.chain_info()
        if valid_until is None:
            valid_until = yield from self.horizon.valid_until(self)
        req = Request(self.client_id, self.seqs.next(), op, valid_until)
        self.horizon.signed(req)
        return sign_request(chain.domain, self.signer, req)

    def outcome(self, req: Request, timeout: float = 120.0) -> Flow:
        """Wait for the definitive outcome of a signed tx: the `tx_status` answer once it is
        COMMITTED or EXPIRED, from any node (outcomes.wait_outcome)."""
        return (yield from wait_outcome(self, req, timeout))

    def submit(self, req: Request, timeout: float | None = None) -> Flow:
        """broadcast_tx_commit with failover; retries send the SAME signed tx (same
        request_seq), so the chain executes it at most once. Returns a verified answer.
        No answer, or a node that did not see the commit in time: the next node; a refusal
        for load (pool, rates, pending quota: `retry_after`): the next node after that wait,
        and raised if every try until the deadline was one; another refusal (TxRejected,
        BadSignature) or any other RPC error: raised at once."""
        timeout = self.timeout if timeout is None else timeout
        tx_hash = request_digest(req)
        deadline = self.clock() + timeout
        last: Exception | None = None
        maybe_admitted = False  # some node may hold it: the deadline is a TxTimeout
        while deadline - self.clock() > 0:
            for u in self.endpoints.order():
                left = deadline - self.clock()
                if left <= 0:
                    break
                params = {"tx": C.tx_param(req), "timeout": max(0.1, min(left, 60.0))}
                if self.proofs is not None:
                    params["prove"] = True
                sent = self.clock()
                try:
                    res = yield from self.call_at(u, "broadcast_tx_commit", params, retries=0)
                except (NoNodeAvailable, RPCCallError) as exc:
                    wait = C.load_refusal_wait(exc)
                    if wait is not None:  # from the send: a node holds such answers that long
                        last = exc
                        yield Sleep(max(0.0, min(sent + wait, deadline) - self.clock()))
                        continue
                    if not C.retry_submit(exc):
                        raise
                    last, maybe_admitted = exc, True
                    continue
                if self.proofs is not None:
                    try:
                        ok = self.proofs.tx(res, tx_hash)
                    except VerificationError as exc:  # the same signed tx to the next node
                        self.rejected.append((u, exc))
                        last = exc
                        continue
                    self.endpoints.worked(u)
                    return ok
                if self.verify == "certificate":  # a tx signed elsewhere: learn the chain
                    yield from self.chain_info()
                ok = C.accept_commit(self.verify, self.chain, tx_hash, res)
                if ok is None:
                    ok = yield from self._confirm_by_replies(tx_hash, res)
                self.horizon.saw(ok.get("height"), self.clock())
                self.endpoints.worked(u)
                return ok
            yield Sleep(max(0.0, min(0.2, deadline - self.clock())))  # no node answered
        if isinstance(last, VerificationError):
            raise last
        if isinstance(last, RPCCallError) and not maybe_admitted and C.load_refusal_wait(last):
            raise last  # every node refused it for load until the deadline: never admitted
        raise TxTimeout(f"tx {tx_hash.hex()} not confirmed within {timeout:g}s: {last}",
                        data={"hash": tx_hash.hex()})

    def _confirm_by_replies(self, tx_hash: bytes, first: dict[str, Any]) -> Flow:
        chain = yield from self.chain_info()
        answers: list[Any] = []
        for u in self.urls:
            try:
                answers.append((yield from self.call_at(u, "tx", {"hash": tx_hash.hex()}, 0)))
            except ClientError as exc:
                answers.append(exc)
        return C.confirmed_by_replies(chain, tx_hash, first, answers)

    def commit_op(self, op: bytes, timeout: float | None = None, check: bool = True) -> Flow:
        """Sign `op`, submit it, wait for the verified commit; raises TxFailed on an app
        error when `check`."""
        res = yield from self.submit((yield from self.sign(op)), timeout)
        return C.check_app_code(res) if check else res

    def broadcast(self, req: Request, mode: str = "sync") -> Flow:
        """broadcast_tx_sync / _async (`mode`): hand the tx to a node, do not wait."""
        return (yield from self.call(f"broadcast_tx_{mode}", tx=C.tx_param(req)))

    # -- reads
    def status(self) -> Flow:
        return (yield from self.call("status"))

    def block(self, height: int | None = None) -> Flow:
        return (yield from self.call("block", **({"height": height} if height else {})))

    def tx(self, tx_hash: str | bytes, prove: bool = False) -> Flow:
        h = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        if self.proofs is not None:
            want = bytes.fromhex(h)
            return (yield from self.read("tx", {"hash": h},
                                         lambda res: self.proofs.tx(res, want)))
        return (yield from self.call("tx", hash=h, prove=prove))

    def tx_status(self, tx: str | bytes | Request, url: str | None = None) -> Flow:
        """{status: COMMITTED|PENDING|EXPIRED|UNKNOWN, committed, height, ...} from one node
        (`url`, default failover). Pass the signed Request to let any node judge expiry."""
        if self.proofs is not None:
            who: tuple[bytes, int] | None = None
            if isinstance(tx, Request):
                want, vu = request_digest(tx), tx.valid_until or None
                who = (tx.client_id, tx.request_seq)
            else:
                want, vu = (tx if isinstance(tx, bytes) else bytes.fromhex(tx)), None
            return (yield from self.read(
                "tx_status", C.tx_status_params(tx),
                lambda res: self.proofs.tx_status(res, want, vu, who), url))
        params = C.tx_status_params(tx)
        if "hash" in params and (vu := self.horizon.valid_until_of(bytes.fromhex(
                params["hash"]))) is not None:  # one of ours: any node can judge its expiry
            params["valid_until"] = vu
        return (yield from self.call_at(url, "tx_status", params))

    def get(self, key: str | bytes, consistency: str = "serializable",
            min_revision: int | None = None, revision: int | None = None) -> Flow:
        """{value, revision, ...}. consistency="linearizable" orders the read through
        consensus (a signed range tx) and verifies its commit certificate."""
        if consistency == "linearizable":
            op = _ops().range_(C.as_bytes(key), revision=revision or 0)
            return C.read_result((yield from self.commit_op(op)))
        return (yield from self.read("kv_get", C.kv_params(
            key, min_revision=min_revision, revision=revision)))

    def range(self, prefix: str | bytes = b"", limit: int = 0, keys_only: bool = False,
              revision: int | None = None) -> Flow:
        return (yield from self.read("kv_range", C.kv_params(
            prefix, prefix=True, limit=limit or None, keys_only=keys_only or None,
            revision=revision)))

    # -- writes
    def put(self, key: str | bytes, value: str | bytes, lease: int = 0) -> Flow:
        return (yield from self.commit_op(_ops().put(C.as_bytes(key), C.as_bytes(value), lease)))

    def delete(self, key: str | bytes, prefix: bool = False) -> Flow:
        return (yield from self.commit_op(_ops().delete(C.as_bytes(key), prefix)))

    def txn(self, compare: Sequence[Any] = (), success: Sequence[Any] = (),
            failure: Sequence[Any] = ()) -> Flow:
        """Build with bftnode.app.ops.compare / put_op / delete_op / range_op."""
        return (yield from self.commit_op(
            _ops().txn(tuple(compare), tuple(success), tuple(failure))))

    # -- leases
    def lease_grant(self, ttl: float) -> Flow:
        return int((yield from self.commit_op(_ops().lease_grant(ttl=ttl)))["result"]["id"])

    def lease_keepalive(self, lease_id: int) -> Flow:
        return (yield from self.commit_op(_ops().lease_keepalive(lease_id)))

    def lease_revoke(self, lease_id: int) -> Flow:
        return (yield from self.commit_op(_ops().lease_revoke(lease_id)))

    def lease_ttl(self, lease_id: int) -> Flow:
        return (yield from self.read("lease_ttl", {"id": lease_id}))

    # -- locks
    def lock_acquire(self, name: str | bytes, lease: int, wait: bool = True,
                     timeout: float = 30.0) -> Flow:
        """Take the lock (queueing FIFO when `wait`); returns the fencing token."""
        ops = _ops()
        n = C.as_bytes(name)
        res = yield from self.commit_op(
            ops.lock_acquire(n, lease) if wait else ops.lock_try_acquire(n, lease))
        token = C.lock_token(res)
        if token is not None:
            return token
        if not wait:
            raise TxFailed(f"lock {name!r} is held", 6, res)
        deadline = self.clock() + timeout
        while self.clock() < deadline:  # queued: wait until the chain grants it to us
            st = yield from self.read("lock_status", C.named(name, lease=lease))
            if st.get("held_by_lease"):
                return int(st["holder"]["token"])
            if not st.get("position"):
                raise TxFailed(f"no longer queued for lock {name!r} (lease expired?)", 2, st)
            yield Sleep(0.05)
        try:
            yield from self.commit_op(ops.lock_cancel(n, lease))
        except ClientError:
            pass
        raise TxTimeout(f"lock {name!r} not granted within {timeout:g}s")

    def lock_release(self, name: str | bytes, token: int) -> Flow:
        return (yield from self.commit_op(_ops().lock_release(C.as_bytes(name), token)))

    def lock_status(self, name: str | bytes, token: int | None = None,
                    min_height: int | None = None) -> Flow:
        """The lock's holder and queue; `min_height`: from a node that has reached it."""
        return (yield from self.read("lock_status", C.named(name, token=token,
                                                             min_height=min_height)))

    # -- elections
    def campaign(self, name: str | bytes, lease: int, value: str | bytes = b"",
                 timeout: float = 30.0) -> Flow:
        """Campaign for leadership of `name` under `lease`; returns the leader token once
        elected (waits while another candidate leads)."""
        res = yield from self.commit_op(_ops().campaign(C.as_bytes(name), lease,
                                                        C.as_bytes(value)))
        token = C.lock_token(res)
        deadline = self.clock() + timeout
        while token is None and self.clock() < deadline:
            st = yield from self.read("election_leader", C.named(name))
            if st.get("lease") == lease:
                return int(st["token"])
            yield Sleep(0.05)
        if token is None:
            raise TxTimeout(f"not elected for {name!r} within {timeout:g}s")
        return token

    def proclaim(self, name: str | bytes, token: int, value: str | bytes) -> Flow:
        return (yield from self.commit_op(_ops().proclaim(C.as_bytes(name), token,
                                                          C.as_bytes(value))))

    def resign(self, name: str | bytes, token: int) -> Flow:
        return (yield from self.commit_op(_ops().resign(C.as_bytes(name), token)))

    def leader(self, name: str | bytes) -> Flow:
        return (yield from self.read("election_leader", C.named(name)))

    # -- permissions (bftnode.app.auth): admin ops, signed by this client's key (the chain
    # refuses them with permission_denied unless it is one of the genesis `app.admins`)
    def auth_role_add(self, role: str) -> Flow:
        return (yield from self.commit_op(_ops().auth_role_add(role)))


    def auth_role_delete(self, role: str) -> Flow:
        """Delete a role (and unbind it from every client)."""
        return (yield from self.commit_op(_ops().auth_role_delete(role)))


    def auth_grant(self, role: str, perm: str, key: str | bytes, prefix: bool = False,
                   range_end: str | bytes = b"") -> Flow:
        """Grant `perm` ("read" | "write" | "readwrite") on `key`, the prefix `key` (`prefix`;
        an empty key = every key) or [key, range_end) to `role`."""
        return (yield from self.commit_op(_ops().auth_grant(
            role, perm, C.as_bytes(key), prefix, C.as_bytes(range_end))))


    def auth_revoke(self, role: str, perm: str, key: str | bytes, prefix: bool = False,
                    range_end: str | bytes = b"") -> Flow:
        """Take back `perm` on exactly what a grant named (same key, prefix, range_end)."""
        return (yield from self.commit_op(_ops().auth_revoke(
            role, perm, C.as_bytes(key), prefix, C.as_bytes(range_end))))


    def auth_bind(self, client: str | bytes, role: str) -> Flow:
        """Bind `role` to a client public key (hex or 32 bytes)."""
        return (yield from self.commit_op(_ops().auth_bind(_client_key(client), role)))


    def auth_unbind(self, client: str | bytes, role: str) -> Flow:
        return (yield from self.commit_op(_ops().auth_unbind(_client_key(client), role)))


    def auth_enable(self, enabled: bool = True) -> Flow:
        """Turn permission checks on (or off with enabled=False)."""
        return (yield from self.commit_op(_ops().auth_enable(enabled)))


    def auth_status(self) -> Flow:
        """{enabled, admins, roles, bindings} of a node's committed state (answered unproven)."""
        return (yield from self.call("auth_status"))


# The operations both fronts expose, each generated from the Core generator of that name.
PUBLIC = (
    "call", "batch", "chain_info", "sign", "outcome", "submit", "commit_op", "broadcast",
    "status", "block", "tx", "tx_status", "get", "range", "put", "delete", "txn",
    "lease_grant", "lease_keepalive", "lease_revoke", "lease_ttl",
    "lock_acquire", "lock_release", "lock_status",
    "campaign", "proclaim", "resign", "leader",
    "auth_role_add", "auth_role_delete", "auth_grant", "auth_revoke", "auth_bind",
    "auth_unbind", "auth_enable", "auth_status",
)


def expose(cls: type, make_method: Callable[[Callable[..., Flow]], Callable]) -> type:
    """Give `cls` one method per name in PUBLIC, made by `make_method` from Core's generator
    (signature and docstring included, via functools.wraps)."""
    for name in PUBLIC:
        flow = getattr(Core, name)
        method = make_method(flow)
        method.__module__, method.__qualname__ = cls.__module__, f"{cls.__name__}.{name}"
        method.__signature__ = inspect.signature(flow).replace(  # type: ignore[attr-defined]
            return_annotation=inspect.Signature.empty)
        setattr(cls, name, method)
    return cls


class Front:
    """What Client and AsyncClient share besides the generated methods: the constructor
    (state lives in `self._core`) and the properties. `_open_http` makes the httpx client
    (verifying https:// nodes with `self._tls_verify`)."""

    def __init__(
        self, urls: str | Sequence[str] | None = None, key: str | os.PathLike | NodeKey | None =
        None, *, timeout: float = 10.0, verify: str = "certificate",
        seq_file: str | os.PathLike | None | bool = None, chain: ChainInfo | None = None,
        retries: int = 2, max_connections: int = 100,
        genesis: str | os.PathLike | ChainInfo | None = None, trust_node: bool = False,
        max_stale_s: float = MAX_STALE_S, ca_file: str | os.PathLike | None = None,
        valid_blocks: int = DEFAULT_VALID_BLOCKS,
    ) -> None:
        proofs = None
        if not trust_node:
            pinned = genesis if isinstance(genesis, ChainInfo) else (
                None if (path := find_genesis(genesis)) is None else chain_from_genesis(path))
            if pinned is not None:
                proofs = ProofVerifier(pinned, max_stale_s=max_stale_s)
                chain = chain or pinned
        self._core = Core(urls, key, timeout=timeout, verify=verify, seq_file=seq_file,
                          chain=chain, retries=retries, proofs=proofs,
                          valid_blocks=valid_blocks)
        self._ca_file = ca_file  # https:// nodes are checked against it (None: system CAs)
        self._tls_verify = http_verify(ca_file)
        self._http = self._open_http(timeout, max_connections)
        self._holds = Holds()  # open lease()/lock() blocks: a lost one fails every call

    def _open_http(self, timeout: float, max_connections: int) -> Any:
        raise NotImplementedError

    @property
    def client_id(self) -> bytes:
        return self._core.client_id

    @property
    def verifying(self) -> bool:
        """Are answers verified against a pinned validator set (a genesis was found)?"""
        return self._core.proofs is not None

    retries = property(lambda self: self._core.retries,
                       lambda self, value: setattr(self._core, "retries", value),
                       doc="Extra failover rounds of a call (after the first).")
