"""The JSON shapes of the RPC's answers: blocks, commit certificates, txs and app results.

Owns how storage types (`StoredBlock`, `TxResult`) and app values become JSON (documented in
docs/rpc.md); pure functions, shared by the method table and the WebSocket subscriptions.

Imports: stdlib, msgspec, consensus (codec), storage.interface (types), bftnode.app (result
decoding, lazily). Must not import trio, starlette, hypercorn or bftnode.node.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from consensus import encode, request_digest
from storage.interface import StateCertificate, StoredBlock, TxResult


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def result_json(data: bytes, encoding: str = "utf8") -> Any:
    """Tx result bytes -> JSON (the app's msgpack map), or {"base64": ...} if not a map."""
    try:
        from bftnode.app.ops import decode_result, jsonable
    except ImportError:  # pragma: no cover - the app package always ships with the node
        return {"base64": b64(data)}
    try:
        return jsonable(decode_result(data), "base64" if encoding == "base64" else "utf8")
    except ValueError:
        return {"base64": b64(data)}


def _code_name(code: int) -> str:
    try:
        from bftnode.app.errors import CODE_NAMES
    except ImportError:  # pragma: no cover
        return "ok" if code == 0 else "error"
    return CODE_NAMES.get(code, "error")


def commit_json(block: StoredBlock) -> dict[str, Any]:
    """The commit certificate: the pre-prepare (holds every ordered request) and 2f+1 signed
    Commits over (view, seq, digest). Clients verify it with consensus codec/auth."""
    cb = block.committed
    pp = cb.pre_prepare
    return {
        "view": pp.view,
        "seq": pp.seq,
        "digest": pp.digest.hex(),
        "pre_prepare": b64(encode(pp)),
        "commits": [b64(encode(c)) for c in cb.commits],
        "signers": sorted(c.replica for c in cb.commits),
    }


def state_certificate_json(cert: StateCertificate | None) -> dict[str, Any] | None:
    """A block's state certificate: the roots and 2f+1 validators' signatures over them. A
    client rebuilds each consensus.StateVote(height, block_hash, state_root, results_root,
    replica, sig) and verifies it against the genesis keys (docs/protocol.md)."""
    if cert is None:
        return None
    return {
        "height": cert.seq,
        "block_hash": cert.block_hash.hex(),
        "state_root": cert.state_root.hex(),
        "results_root": cert.results_root.hex(),
        "certificate": [{"replica": v.replica, "sig": v.sig.hex()} for v in cert.votes],
    }


def block_json(block: StoredBlock, with_txs: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "height": block.height,
        "hash": block.hash.hex(),
        "prev_hash": block.prev_hash.hex(),
        "time": block.time_ms,
        "time_ms": block.time_ms,
        "view": block.view,
        "digest": block.digest.hex(),
        "state_root": block.state_root.hex(),
        "results_root": block.results_root.hex(),
        "state_certificate": state_certificate_json(block.state_certificate),
        "num_txs": len(block.txs),
        "tx_hashes": [request_digest(r).hex() for r in block.txs],
    }
    if with_txs:
        out["txs"] = [b64(encode(r)) for r in block.txs]
        out["commit"] = commit_json(block)
    return out


def tx_json(res: TxResult, encoding: str = "utf8") -> dict[str, Any]:
    return {
        "hash": res.tx_hash.hex(),
        "height": res.height,
        "index": res.index,
        "client_id": res.client_id.hex(),
        "request_seq": res.request_seq,
        "code": res.code,
        "code_name": _code_name(res.code),
        "result": result_json(res.result, encoding),
        "result_raw": b64(res.result),
    }


def to_builtins(value: Any) -> Any:
    """Dataclasses / msgspec Structs / dicts -> plain data with bytes kept (for jsonable)."""
    return msgspec.to_builtins(value, builtin_types=(bytes, bytearray, memoryview))


def jsonable(value: Any, encoding: str = "utf8") -> Any:
    from bftnode.app.ops import jsonable as _jsonable

    return _jsonable(to_builtins(value), "base64" if encoding == "base64" else "utf8")

