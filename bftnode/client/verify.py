"""Verifying proven answers against a PINNED validator set (docs/rpc.md "Proofs").

`check_certificate` is the one check of a state certificate: 2f+1 distinct validators of the
pinned set (the genesis file) signed the StateVote (height, block_hash, state_root,
results_root, replica) that the client rebuilds. `ProofVerifier` then checks what the answer
claims against the certified roots: an application read by re-running the SAME app query over
a reader serving only the proven ranges (bftnode.app.proven_state) and comparing; a tx by its
result's path to the results root; a tx absent by an absence proof. It raises a
VerificationError subclass: ForgedAnswer (a proof or answer that does not check), IncompleteAnswer
(no proof, or a read outside the proven ranges), StaleAnswer (a height older than one already
verified, beyond `max_lag_blocks`, or a block time older than `max_stale_s`).
Imports: stdlib, consensus (codec, auth), storage (keys, merkle_proof), bftnode.app,
bftnode.genesis, bftnode.rpc.shapes, bftnode.client.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.auth import Ed25519Verifier
from consensus.codec import signing_bytes
from consensus.messages import StateVote
from storage import keys
from storage.client_seqs import Seqs
from storage.interface import TxResult
from storage.merkle_proof import ProofError
from storage.results_root import result_leaf, verify_result

from ..app.proven_state import (
    IncompleteRead,
    ProvenRange,
    ProvenReader,
    block_time,
    check_ranges,
)
from .core import ChainInfo
from .errors import ForgedAnswer, IncompleteAnswer, StaleAnswer, VerificationError

GENESIS_ENV = "BFTNODE_GENESIS"
MAX_STALE_S = 30.0
MAX_LAG_BLOCKS = 3
APP_READS = ("kv_get", "kv_range", "lease_ttl", "lock_status", "election_leader", "revision")
_ed25519 = Ed25519Verifier()


def chain_from_genesis(path: str | os.PathLike) -> ChainInfo:
    """The pinned chain (id, signature domain, validator keys) of a genesis file."""
    from ..genesis import Genesis, GenesisError

    p = Path(path)
    try:
        g = Genesis.from_dict(json.loads(p.read_text()), str(p))
    except (OSError, ValueError, GenesisError) as exc:
        raise VerificationError(f"cannot pin the validator set from {p}: {exc}") from None
    return ChainInfo(g.chain_id, g.domain, g.replica_keys())


def find_genesis(explicit: str | os.PathLike | None = None) -> Path | None:
    """The genesis file to pin: `explicit`, else $BFTNODE_GENESIS, else the client home's
    genesis.json ($BFTNODE_HOME or ~/.bftnode); None when there is none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(GENESIS_ENV)
    if env:
        return Path(env)
    home = Path(os.environ.get("BFTNODE_HOME") or Path.home() / ".bftnode")
    p = home / "genesis.json"
    return p if p.is_file() else None


@dataclass(frozen=True)
class Header:
    height: int
    block_hash: bytes
    state_root: bytes
    results_root: bytes


def _hex(obj: Any, name: str, size: int | None = 32) -> bytes:
    try:
        raw = bytes.fromhex(obj[name])
    except (KeyError, TypeError, ValueError):
        raise ForgedAnswer(f"verification failed: proof field {name!r} is not hex") from None
    if size is not None and len(raw) != size:
        raise ForgedAnswer(f"verification failed: proof field {name!r} is not {size} bytes")
    return raw


def check_certificate(chain: ChainInfo, proof: Any) -> Header:
    """The certified header of `proof`; ForgedAnswer unless 2f+1 distinct pinned validators
    signed its StateVote."""
    if not isinstance(proof, dict):
        raise IncompleteAnswer("verification failed: the answer carries no proof "
                               "(does the node run authenticated_state?)")
    h = proof.get("height")
    if not isinstance(h, int) or h <= 0:
        raise ForgedAnswer("verification failed: proof height missing")
    hdr = Header(h, _hex(proof, "block_hash"), _hex(proof, "state_root"),
                 _hex(proof, "results_root"))
    sigs = proof.get("certificate")
    if not isinstance(sigs, list):
        raise ForgedAnswer("verification failed: proof has no certificate")
    valid: set[int] = set()
    for item in sigs[: 4 * len(chain.validator_keys)]:
        r = item.get("replica") if isinstance(item, dict) else None
        if not isinstance(r, int) or not 0 <= r < len(chain.validator_keys) or r in valid:
            continue
        try:
            sig = bytes.fromhex(item["sig"])
            vote = StateVote(hdr.height, hdr.block_hash, hdr.state_root, hdr.results_root, r)
        except (KeyError, TypeError, ValueError):
            continue
        if _ed25519.verify(chain.validator_keys[r], chain.domain + signing_bytes(vote), sig):
            valid.add(r)
    if len(valid) < chain.quorum:
        raise ForgedAnswer(f"verification failed: the state certificate of height {h} has "
                           f"{len(valid)} valid signatures of the pinned validators, needs "
                           f"{chain.quorum}")
    return hdr


def _ranges(proof: dict[str, Any]) -> list[ProvenRange]:
    items = proof.get("state")
    if not isinstance(items, list):
        raise IncompleteAnswer("verification failed: the proof has no state ranges")
    out = []
    try:
        for it in items:
            hi = it.get("hi")
            limit = it.get("limit")
            if limit is not None and (not isinstance(limit, int) or limit <= 0):
                raise ValueError("bad limit")
            out.append(ProvenRange(
                bytes.fromhex(it["lo"]), None if hi is None else bytes.fromhex(hi), limit,
                tuple((bytes.fromhex(k), bytes.fromhex(v)) for k, v in it["entries"]),
                bytes.fromhex(it["proof"])))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ForgedAnswer(f"verification failed: malformed state proof ({exc})") from None
    return out


def _data(params: dict[str, Any], name: str, default: str | None = None) -> bytes:
    v = params.get(name, default)
    if v is None:
        raise VerificationError(f"cannot verify: param {name!r} missing")
    if params.get("encoding") == "base64":
        return base64.b64decode(v)
    return v.encode("utf-8")


def query_args(method: str, params: dict[str, Any], proof: dict[str, Any]) -> dict[str, Any]:
    """The app query the node must have run for these RPC params (bftnode.rpc.handlers)."""
    given = {n: params[n] for n in ("prefix", "keys_only", "count_only", "token", "lease",
                                    "keys", "require") if params.get(n) is not None}
    rev = {"revision": params["revision"]} if params.get("revision") else {}
    if method == "kv_get":
        return {"key": _data(params, "key"), **rev}
    if method == "kv_range":
        limit = proof.get("query_limit")
        asked = params.get("limit")
        if not isinstance(limit, int) or limit <= 0 or (asked and limit > asked):
            raise ForgedAnswer(f"verification failed: kv_range ran with limit {limit!r}")
        return {"key": _data(params, "key", ""), **given, "limit": limit, **rev}
    if method == "lease_ttl":
        return {"id": params["id"], **given}
    if method in ("lock_status", "election_leader"):
        return {"name": _data(params, "name"), **given}
    if method == "revision":
        return {}
    raise VerificationError(f"cannot verify method {method!r}")


class ProofVerifier:
    """Checks proven answers for one client session (tracks the highest verified height)."""

    def __init__(self, chain: ChainInfo, *, max_stale_s: float = MAX_STALE_S,
                 max_lag_blocks: int = MAX_LAG_BLOCKS,
                 clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.max_stale_s = max_stale_s
        self.max_lag_blocks = max_lag_blocks
        self.clock = clock
        self.highest = 0  # the highest height verified so far

    def _fresh(self, hdr: Header, time_ms: int | None) -> None:
        if hdr.height + self.max_lag_blocks < self.highest:
            raise StaleAnswer(f"verification failed: stale answer at height {hdr.height}, "
                              f"height {self.highest} was already verified")
        if time_ms is not None:
            age = self.clock() - time_ms / 1000
            if age > self.max_stale_s:
                raise StaleAnswer(f"verification failed: stale answer: its state is "
                                  f"{age:.1f}s old (bound {self.max_stale_s:g}s)")
        self.highest = max(self.highest, hdr.height)

    def _state(self, proof: dict[str, Any]) -> tuple[Header, ProvenReader, int]:
        hdr = check_certificate(self.chain, proof)
        ranges = _ranges(proof)
        try:
            check_ranges(hdr.state_root, ranges)
        except ProofError as exc:
            raise ForgedAnswer(f"verification failed: state proof: {exc}") from None
        reader = ProvenReader(ranges)
        try:
            time_ms = block_time(reader)
        except IncompleteRead as exc:
            raise IncompleteAnswer(f"verification failed: {exc}") from None
        self._fresh(hdr, time_ms)
        return hdr, reader, time_ms

    def app_read(self, method: str, params: dict[str, Any], answer: Any) -> dict[str, Any]:
        """The verified answer of an application read: the client's OWN result of the query
        over the proven state (the node's answer must equal it)."""
        from ..app import KVApplication
        from ..app.errors import AppError
        from ..app.ops import jsonable

        if not isinstance(answer, dict):
            raise ForgedAnswer("verification failed: the answer is not an object")
        proof = answer.get("proof")
        hdr, reader, time_ms = self._state(proof)
        q = query_args(method, params, proof)
        try:
            res = KVApplication().query(reader, method, q, hdr.height, time_ms)
        except IncompleteRead as exc:
            raise IncompleteAnswer(f"verification failed: incomplete answer: {exc}") from None
        except AppError as exc:
            raise ForgedAnswer(f"verification failed: the proven state answers an error "
                               f"({exc.message})") from None
        mine = jsonable(res, "base64" if params.get("encoding") == "base64" else "utf8")
        if method == "kv_range":
            _cut_page(mine, answer)
        for k, v in mine.items():
            if answer.get(k) != v:
                raise ForgedAnswer(f"verification failed: {method} field {k!r} is "
                                   f"{answer.get(k)!r}, the proven state says {v!r}")
        mine.update(height=hdr.height, read_height=hdr.height, verified="proof")
        return mine

    def tx(self, answer: Any, tx_hash: bytes | None = None) -> dict[str, Any]:
        """A committed tx's answer, its result checked against the certified results root."""
        from ..rpc.shapes import _code_name, result_json

        if not isinstance(answer, dict):
            raise ForgedAnswer("verification failed: the answer is not an object")
        proof = answer.get("proof")
        hdr = check_certificate(self.chain, proof)
        rp = proof.get("result")
        try:
            got = TxResult(bytes.fromhex(answer["hash"]), bytes.fromhex(answer["client_id"]),
                            int(answer["request_seq"]), int(answer["height"]),
                            int(answer["index"]), int(answer["code"]),
                            base64.b64decode(answer["result_raw"], validate=True))
            path = [bytes.fromhex(x) for x in rp["path"]]
            index, count = int(rp["index"]), int(rp["count"])
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ForgedAnswer(f"verification failed: malformed tx proof ({exc})") from None
        if tx_hash is not None and got.tx_hash != tx_hash:
            raise ForgedAnswer("verification failed: the node answered for another tx")
        if got.height != hdr.height or index != got.index:
            raise ForgedAnswer("verification failed: the tx's height/index differ from its proof")
        try:
            verify_result(hdr.results_root, result_leaf(got), index, count, path)
        except ProofError as exc:
            raise ForgedAnswer(f"verification failed: tx result: {exc}") from None
        self.highest = max(self.highest, hdr.height)
        out = dict(answer)
        out.update(result=result_json(got.result), code_name=_code_name(got.code),
                   verified="proof")
        return out

    def tx_status(self, answer: Any, tx_hash: bytes | None, valid_until: int | None = None,
                  client: tuple[bytes, int] | None = None) -> dict[str, Any]:
        """A tx_status answer: COMMITTED with its proven result, or not committed: the
        client's executed-seqs record (storage.client_seqs) proven at the certified height
        shows (client_id, request_seq) did not execute (EXPIRED only if that height >=
        valid_until). Tx records by hash are not in the state tree, so a not-committed answer
        is provable only for a tx whose client and seq the caller knows (it passed the signed
        tx)."""
        if not isinstance(answer, dict):
            raise ForgedAnswer("verification failed: the answer is not an object")
        if answer.get("committed"):
            if answer.get("status") != "COMMITTED":
                raise ForgedAnswer("verification failed: committed but status "
                                   f"{answer.get('status')!r}")
            answer["tx"] = self.tx(answer.get("tx"), tx_hash)
            answer["verified"] = "proof"
            return answer
        if client is None:
            raise IncompleteAnswer(
                "verification failed: a not-committed status is provable only for a tx whose "
                "client and seq are known: pass the signed tx (or --trust-node)")
        proof = answer.get("proof")
        hdr, reader, _ = self._state(proof)
        try:
            raw = reader.tree_get(keys.client_seqs(client[0]))
        except IncompleteRead:
            raise IncompleteAnswer("verification failed: no proof of the client's executed "
                                   "seqs") from None
        if raw is not None:
            try:
                done = Seqs.decode(raw).executed(client[1])
            except ValueError as exc:  # proven, so only a chain that certified garbage sends it
                raise ForgedAnswer(f"verification failed: the proven client seqs: {exc}"
                                   ) from None
            if done:
                raise ForgedAnswer("verification failed: the tx IS committed (proof shows it)")
            if done is None:
                # below the window: the record no longer tells
                raise ForgedAnswer(f"verification failed: request_seq {client[1]} is at or "
                                   "below its client's window: not provably uncommitted")
        status = answer.get("status")
        if status == "COMMITTED" or status not in ("PENDING", "UNKNOWN", "EXPIRED"):
            raise ForgedAnswer(f"verification failed: status {status!r} without a commit")
        vu = valid_until or answer.get("valid_until")
        if status == "EXPIRED" and not (vu and hdr.height >= vu):
            raise ForgedAnswer(f"verification failed: EXPIRED at height {hdr.height}, "
                               f"valid_until {vu}")
        answer.update(height=hdr.height, verified="proof")
        return answer


def _cut_page(mine: dict[str, Any], answer: dict[str, Any]) -> None:
    """A node may answer fewer kvs than the query (its byte budget): then a prefix of them,
    with `more`."""
    kvs, theirs = mine.get("kvs"), answer.get("kvs")
    if isinstance(kvs, list) and isinstance(theirs, list) and 0 < len(theirs) < len(kvs):
        mine["kvs"] = kvs[: len(theirs)]
        mine["more"] = True
