"""Certificates of the protocol and their verification.

Owns the rules that say when a set of signed messages proves something: a prepared proof
(pre-prepare + 2f matching prepares from distinct backups), a commit certificate (2f+1 matching
commits from distinct replicas), a checkpoint proof (2f+1 matching checkpoints), a valid
VIEW-CHANGE and a valid NEW-VIEW. Every `verify_*` returns None when valid, else a short reason
(a string, never an exception). Pure; imports stdlib and consensus only.
"""

from __future__ import annotations

from collections.abc import Iterable

from .auth import Authenticator
from .codec import GENESIS_CHAIN_DIGEST, batch_digest
from .messages import (
    Checkpoint,
    Commit,
    CommittedBlock,
    NewView,
    PreparedProof,
    PrePrepare,
    ViewChange,
)
from .types import Config

DIGEST_LEN = 32


def verify_pre_prepare_content(config: Config, pp: PrePrepare) -> str | None:
    """Shape and digest of a pre-prepare (not its signature, not the window)."""
    if pp.view < 0 or pp.seq < 1:
        return "negative view or seq < 1"
    if pp.replica != config.primary(pp.view):
        return f"pre-prepare for view {pp.view} not from its primary"
    if pp.requests and pp.digest != batch_digest(pp.time_ms, pp.requests):
        return "pre-prepare digest does not match its batch"
    return None  # a header (no requests) is bound to its batch by the signed digest


def _distinct(msgs: Iterable, what: str) -> str | None:
    seen: set[int] = set()
    for m in msgs:
        if m.replica in seen:
            return f"duplicate {what} from replica {m.replica}"
        seen.add(m.replica)
    return None


def verify_prepared_proof(
    config: Config, auth: Authenticator, proof: PreparedProof, check_sigs: bool = True
) -> str | None:
    """A pre-prepare signed by its view's primary plus 2f matching prepares from distinct
    backups (the primary's pre-prepare stands for its own prepare)."""
    pp = proof.pre_prepare
    reason = verify_pre_prepare_content(config, pp)
    if reason:
        return reason
    if check_sigs and not auth.verify(pp):
        return "bad pre-prepare signature in prepared proof"
    if len(proof.prepares) != config.quorum - 1:
        return f"prepared proof needs {config.quorum - 1} prepares, has {len(proof.prepares)}"
    reason = _distinct(proof.prepares, "prepare")
    if reason:
        return reason
    for p in proof.prepares:
        if (p.view, p.seq, p.digest) != (pp.view, pp.seq, pp.digest):
            return "prepare does not match the pre-prepare"
        if p.replica == pp.replica:
            return "the primary's prepare cannot count"
        if check_sigs and not auth.verify(p):
            return f"bad prepare signature from replica {p.replica}"
    return None


def verify_commit_certificate(
    config: Config, auth: Authenticator, pp: PrePrepare, commits: tuple[Commit, ...]
) -> str | None:
    """2f+1 valid commits from distinct replicas for the pre-prepare's view/seq/digest."""
    if len(commits) < config.quorum:
        return f"commit certificate needs {config.quorum} commits, has {len(commits)}"
    reason = _distinct(commits, "commit")
    if reason:
        return reason
    for c in commits:
        if (c.view, c.seq, c.digest) != (pp.view, pp.seq, pp.digest):
            return "commit does not match the pre-prepare"
        if not auth.verify(c):
            return f"bad commit signature from replica {c.replica}"
    return None


def verify_committed_block(
    config: Config, auth: Authenticator, block: CommittedBlock
) -> str | None:
    """A block from block sync: correct batch digest and a valid commit certificate."""
    pp = block.pre_prepare
    if pp.seq < 1:
        return "block seq < 1"
    if pp.digest != batch_digest(pp.time_ms, pp.requests):
        return "block digest does not match its batch"
    return verify_commit_certificate(config, auth, pp, block.commits)


def verify_checkpoint_proof(
    config: Config,
    auth: Authenticator,
    seq: int,
    state_digest: bytes,
    proof: tuple[Checkpoint, ...],
) -> str | None:
    """2f+1 matching checkpoints from distinct replicas; seq 0 (genesis) needs no proof."""
    if seq == 0:
        if state_digest != GENESIS_CHAIN_DIGEST or proof:
            return "genesis checkpoint must have the genesis digest and no proof"
        return None
    if seq < 0 or seq % config.checkpoint_interval != 0:
        return f"checkpoint seq {seq} is not a multiple of the interval"
    if len(proof) < config.quorum:
        return f"checkpoint proof needs {config.quorum} checkpoints, has {len(proof)}"
    reason = _distinct(proof, "checkpoint")
    if reason:
        return reason
    for c in proof:
        if c.seq != seq or c.state_digest != state_digest:
            return "checkpoint does not match"
        if not auth.verify(c):
            return f"bad checkpoint signature from replica {c.replica}"
    return None


def verify_view_change(config: Config, auth: Authenticator, vc: ViewChange) -> str | None:
    """Contents of a VIEW-CHANGE (its own signature is checked by the caller): a valid stable
    checkpoint proof and valid prepared proofs for distinct seqs in the window above it, each
    from a view lower than the one asked for."""
    if vc.new_view < 1:
        return "view-change to view < 1"
    if len(vc.stable_digest) != DIGEST_LEN:
        return "bad stable digest length"
    reason = verify_checkpoint_proof(
        config, auth, vc.stable_seq, vc.stable_digest, vc.checkpoint_proof
    )
    if reason:
        return reason
    seqs: set[int] = set()
    high = vc.stable_seq + config.watermark_window
    for proof in vc.prepared:
        pp = proof.pre_prepare
        if not vc.stable_seq < pp.seq <= high:
            return f"prepared seq {pp.seq} outside ({vc.stable_seq}, {high}]"
        if pp.view >= vc.new_view:
            return "prepared proof from a view not lower than the new view"
        if pp.seq in seqs:
            return f"two prepared proofs for seq {pp.seq}"
        seqs.add(pp.seq)
        reason = verify_prepared_proof(config, auth, proof)
        if reason:
            return reason
    return None


def verify_new_view(
    config: Config, auth: Authenticator, nv: NewView, expected: tuple[PrePrepare, ...]
) -> str | None:
    """The NEW-VIEW's own parts, given `expected` = build_new_view(view_changes) content.

    The caller verifies the view-changes first (2f+1 distinct, each valid, for nv.view)."""
    if nv.replica != config.primary(nv.view):
        return "new-view not from the primary of its view"
    if len(nv.pre_prepares) != len(expected):
        return "new-view pre-prepares differ from the ones the view-changes determine"
    for got, want in zip(nv.pre_prepares, expected, strict=True):
        if got.sig == b"" or got != _with_sig(want, got.sig):
            return f"new-view pre-prepare for seq {want.seq} differs from the computed one"
        if not auth.verify(got):
            return f"bad pre-prepare signature in new-view for seq {got.seq}"
    return None


def _with_sig(pp: PrePrepare, sig: bytes) -> PrePrepare:
    return PrePrepare(pp.view, pp.seq, pp.time_ms, pp.requests, pp.digest, pp.replica, sig)
