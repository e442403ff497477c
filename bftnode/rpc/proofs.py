"""Proofs with RPC answers (docs/rpc.md "Proofs"): the node half.

A proven answer carries `proof`: the certified header of a height H (block hash, state root,
results root, 2f+1 StateVote signatures) and either the range proofs of every state key range
an application query read at version H (`state`), or a tx result's path to its block's results
root (`result`). `state_certificate(node, height)` is THE accessor of certificates (the node's
`Node.state_certificate`); everything else here runs in a read worker over one view
(storage.read_view.ReadView, whose `prove` reads the state tree from the view's snapshot).
Imports: stdlib, trio, consensus (request_digest), storage (keys), bftnode.app.proven_state,
bftnode.rpc. Must not import bftnode.node.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from consensus import request_digest
from storage.merkle_proof import successor
from storage.results_root import result_leaf, results_proof, results_root

from ..app.proven_state import IncompleteRead, ProvenRange, RecordingReader, block_time
from .errors import INTERNAL_ERROR, INVALID_PARAMS, STALE_READ, RPCError
from .shapes import state_certificate_json

CERT_WAIT_S = 5.0  # how long an answer waits for its height's certificate
CERT_POLL_S = 0.02


def proofs_on(node: Any) -> bool:
    """Does this node keep the authenticated state tree (config `authenticated_state`)?"""
    return getattr(getattr(node, "store", None), "auth", None) is not None


def want_proof(node: Any, prove: bool | None) -> bool:
    """The `prove` param: default on when the node runs authenticated_state."""
    if prove is None:
        return proofs_on(node)
    if prove and not proofs_on(node):
        raise RPCError(INVALID_PARAMS, "param 'prove': this node does not run "
                       "authenticated_state, so it has no proofs (ask another node, or "
                       "prove=false)", {"param": "prove"})
    return prove


def state_certificate(node: Any, height: int | None = None) -> Any:
    """The certificate (storage.interface.StateCertificate: seq, block_hash, state_root,
    results_root, votes) of `height`, or of the latest certified height (None); None when
    there is none (yet)."""
    fn = getattr(node, "state_certificate", None)
    return fn(height) if callable(fn) else None


async def certified(node: Any, height: int | None = None, wait_s: float = CERT_WAIT_S,
                    at_least: int = 0) -> Any:
    """The certificate of `height` (latest: None, and then of a height >= `at_least`) for a
    block this node has executed (a certificate can form from the others' votes first),
    waiting up to `wait_s` for it (a block's votes follow its execution); stale_read when
    there is none."""
    with trio.move_on_after(wait_s):
        while True:
            cert = state_certificate(node, height)
            own = node.height()
            if cert is not None and height is None and cert.seq > own:
                # 2f+1 others certified a block this node has not executed yet: its tree has
                # no such version, so prove at its own last certified block instead
                cert = state_certificate(node, own)
            if (cert is not None and cert.seq <= own
                    and (height is not None or cert.seq >= at_least)):
                return cert
            await trio.sleep(CERT_POLL_S)
    what = f"height {height}" if height is not None else (
        f"a height >= {at_least}" if at_least else "any height")
    raise RPCError(STALE_READ, f"stale read: no state certificate for {what} yet on this "
                   "node; retry, or ask another node", {"height": node.height()})


def header_json(cert: Any) -> dict[str, Any]:
    """The proof's certified header: the same JSON as the `block` answer's
    `state_certificate`."""
    out = state_certificate_json(cert)
    assert out is not None
    return out


def range_json(r: ProvenRange) -> dict[str, Any]:
    return {"lo": r.lo.hex(), "hi": None if r.hi is None else r.hi.hex(), "limit": r.limit,
            "entries": [[k.hex(), v.hex()] for k, v in r.entries], "proof": r.proof.hex()}


def proven_query(app: Any, method: str, params: dict[str, Any], cert: Any,
                 shape: Callable[[dict], Any], view: Any) -> Any:
    """The app's query at the certified version, over a recording reader; its answer gets
    the proof (shaped and sized by `shape`, so the proof counts against the read budget)."""
    rec = RecordingReader(partial(view.prove, cert.seq))
    try:
        time_ms = block_time(rec)
        res = app.query(rec, method, params, cert.seq, time_ms)
    except IncompleteRead as exc:
        raise RPCError(INTERNAL_ERROR, f"proof not built: {exc}") from None
    if rec.root != cert.state_root:
        raise RPCError(INTERNAL_ERROR, f"this node's state at height {cert.seq} does not match "
                       "the certified state root; ask another node")
    res["proof"] = {**header_json(cert), "state": [range_json(r) for r in rec.ranges]}
    if method == "kv_range":  # the page limit the node ran it with (its config)
        res["proof"]["query_limit"] = params.get("limit")
    return shape(res)


def keys_json(view: Any, cert: Any, tree_keys: tuple[bytes, ...]) -> dict[str, Any]:
    """The proof of what each of `tree_keys` holds (present or absent) in the state at the
    certified height, with the state's block time (so the client can judge how fresh it is)."""
    rec = RecordingReader(partial(view.prove, cert.seq))
    block_time(rec)
    if rec.root != cert.state_root:
        raise RPCError(INTERNAL_ERROR, "state proof not built (state moved)")
    ranges = list(rec.ranges)
    for k in tree_keys:
        root, entries, proof = view.prove(cert.seq, k, successor(k))
        if root != cert.state_root:
            raise RPCError(INTERNAL_ERROR, "state proof not built (state moved)")
        ranges.append(ProvenRange(k, successor(k), None, tuple(entries), proof))
    return {**header_json(cert), "state": [range_json(r) for r in ranges]}


def result_proof_json(view: Any, res: Any, cert: Any) -> dict[str, Any]:
    """The proof of a committed tx's result: its leaf and path to the results root of its
    block (certified at that height)."""
    block = view.block(res.height)
    if block is None:
        raise RPCError(INTERNAL_ERROR, f"block {res.height} of the tx is not stored here")
    results = [view.tx(request_digest(r)) for r in block.txs]
    if any(r is None or r.height != res.height or r.index != i for i, r in enumerate(results)):
        raise RPCError(INTERNAL_ERROR, f"the tx results of block {res.height} are incomplete")
    leaves = [result_leaf(r) for r in results]
    if results_root(leaves) != cert.results_root:
        raise RPCError(INTERNAL_ERROR, f"this node's results of block {res.height} do not "
                       "match the certified results root; ask another node")
    return {**header_json(cert), "result": {
        "leaf": leaves[res.index].hex(), "index": res.index, "count": len(leaves),
        "path": [h.hex() for h in results_proof(leaves, res.index)]}}
