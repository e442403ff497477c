"""Evidence transactions: how a replica puts proof of misbehaviour on the ledger, and the pure,
deterministic rule that turns a committed proof into a conviction.

Owns the evidence op (a msgpack map `{"op": "evidence", "accused", "kind", "reason", "proof"}`,
the same shape bftnode.app parses), the proof encoding (the canonical encoding of the two
signed conflicting messages), `verify_proof` (the conviction rule: same signer, same slot,
different digests, both signatures valid under the chain's validator keys) and the builder of
the validator-signed evidence `Request`. Pure; imports stdlib, msgspec and consensus only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .auth import Authenticator, sign_request
from .codec import encode_raw
from .messages import Checkpoint, Commit, Prepare, PrePrepare, Request

PROOF_KINDS = ("equivocation",)
"""Evidence kinds that carry a proof and convict (skipped in the primary rotation)."""

REPORT_KINDS = ("bad-signature", "bad-new-view", "bad-checkpoint", "bad-block-sync",
                "bad-conflict")
"""Evidence kinds committed as signed reports: visible to all, convicting nobody."""

MAX_EVIDENCE_OP_BYTES = 4096  # a proof is two signed headers or votes: ~0.5 KB
MAX_REPORT_PROOF_BYTES = 4096  # a report's attached messages; larger ones are omitted
REPORT_EVERY_BLOCKS = 256  # one report per (accused, kind) per reporter per this many blocks
MAX_REASON_CHARS = 200

Vote = PrePrepare | Prepare | Commit | Checkpoint


class EvidenceOp(msgspec.Struct, frozen=True, tag_field="op", tag="evidence",
                 forbid_unknown_fields=True):
    """The op of an evidence transaction (encodes as a msgpack map with "op": "evidence")."""

    accused: int
    kind: str
    reason: str = ""
    proof: bytes = b""


_op_decoder = msgspec.msgpack.Decoder(EvidenceOp)
_proof_decoder = msgspec.msgpack.Decoder(tuple[Vote, Vote])


def encode_proof(first: Vote, second: Vote) -> bytes:
    """The proof of an equivocation: the canonical encoding of the two signed messages."""
    return encode_raw((first, second))


def decode_proof(proof: bytes) -> tuple[Vote, Vote] | None:
    try:
        return _proof_decoder.decode(proof)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None


def parse_evidence_op(op: bytes) -> EvidenceOp | None:
    """The evidence op in `op`, or None if `op` is not a well-formed evidence op."""
    if b"evidence" not in op:  # cheap pre-filter: most ops are KV ops
        return None
    try:
        return _op_decoder.decode(op)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None


def _slot_and_value(m: Vote) -> tuple[tuple, bytes]:
    if isinstance(m, Checkpoint):
        return ("checkpoint", m.seq), m.state_digest
    return (type(m).__name__, m.view, m.seq), m.digest


def verify_proof(auth: Authenticator, accused: int, proof: bytes) -> str | None:
    """None if `proof` proves that replica `accused` signed two conflicting messages for one
    slot (pre-prepares, prepares or commits of one view and seq, or checkpoints of one seq);
    else why not. Pure and deterministic: same answer on every replica of the chain."""
    pair = decode_proof(proof)
    if pair is None:
        return "undecodable proof"
    a, b = pair
    if type(a) is not type(b):
        return "the two messages are of different types"
    if a.replica != accused or b.replica != accused:
        return f"the messages are not both signed by replica {accused}"
    slot_a, value_a = _slot_and_value(a)
    slot_b, value_b = _slot_and_value(b)
    if slot_a != slot_b:
        return "the messages are for different slots"
    if value_a == value_b:
        return "the messages do not conflict"
    if not auth.verify(a) or not auth.verify(b):
        return "a signature does not verify"
    return None


def check_evidence(auth: Authenticator, n: int, req: Request) -> str | None:
    """Why `req` is not acceptable evidence, or None (also for a request that is not an
    evidence op). Evidence must prove itself: signed by a validator, a proof kind, an accused
    replica of the chain, small, and a proof that verifies - two conflicting messages signed by
    the accused for one slot. Pure and deterministic: checked before ordering and again at
    execution."""
    op = parse_evidence_op(req.op)
    if op is None:
        return None
    if req.client_id not in auth.replica_keys:
        return "evidence must be signed by a validator key"
    if len(req.op) > MAX_EVIDENCE_OP_BYTES:
        return f"evidence of {len(req.op)} bytes exceeds {MAX_EVIDENCE_OP_BYTES}"
    if op.kind not in PROOF_KINDS:
        return f"evidence kind {op.kind!r} carries no checkable proof"
    if not 0 <= op.accused < n:
        return f"accused replica {op.accused} is not a validator"
    reason = verify_proof(auth, op.accused, op.proof)
    return None if reason is None else f"evidence proof: {reason}"


def report_proof(messages: tuple[Any, ...]) -> bytes:
    """The messages attached to a report, or b"" when they exceed MAX_REPORT_PROOF_BYTES."""
    if not messages:
        return b""
    data = encode_raw(tuple(m for m in messages if not isinstance(m, bytes | bytearray)))
    return data if len(data) <= MAX_REPORT_PROOF_BYTES else b""


def evidence_request(auth: Authenticator, accused: int, kind: str, reason: str, proof: bytes,
                     request_seq: int) -> Request:
    """A transaction signed by this replica's validator key (client_id = its public key)
    carrying evidence against `accused`."""
    op = encode_raw(EvidenceOp(accused, kind, reason[:MAX_REASON_CHARS], proof))
    return sign_request(auth.domain, auth.signer, Request(b"", request_seq, op))
