"""On-disk value shapes of the ledger (msgpack via msgspec, array-like: compact, one encoding).

Owns the storage-only structs (block header, block body, tx record, chain base) and the typed
decoders for them and for the consensus records. Decoding errors become CorruptionError with the
key that failed. Imports: stdlib, msgspec, consensus (messages/events/codec only).
"""

from __future__ import annotations

from typing import Any

import msgspec

from consensus import (
    CommittedBlock,
    Conviction,
    OwnVote,
    PreparedCert,
    Request,
    StableCheckpoint,
    StateVote,
    ViewState,
)
from consensus.codec import encode_raw

from .interface import CorruptionError


class BlockHeader(msgspec.Struct, frozen=True, array_like=True):
    height: int
    hash: bytes
    prev_hash: bytes
    digest: bytes
    time_ms: int
    view: int
    state_root: bytes  # the state tree's root after the block (32 zero bytes with it off)
    # Merkle root of the block's tx results (storage.results_root); headers written before
    # this field decode with 32 zero bytes
    results_root: bytes = bytes(32)


class BlockBody(msgspec.Struct, frozen=True, array_like=True):
    txs: tuple[Request, ...]  # executed, in order (empty when `from_batch`)
    skipped: tuple[tuple[Request, str], ...]  # in the batch but not executed, with the reason
    committed: CommittedBlock  # pre-prepare + commit certificate
    # The executed txs are the pre-prepare's requests minus the positions in `skip_at`: every
    # tx is stored once, not twice (it is in the signed pre-prepare anyway). Bodies written
    # before this field decode with from_batch=False and keep their explicit `txs`.
    from_batch: bool = False
    skip_at: tuple[int, ...] = ()

    def executed(self) -> tuple[Request, ...]:
        if not self.from_batch:
            return self.txs
        reqs = self.committed.pre_prepare.requests
        if not self.skip_at:
            return reqs
        skip = set(self.skip_at)
        return tuple(r for i, r in enumerate(reqs) if i not in skip)


def body_for(
    run: tuple[Request, ...], skipped: tuple[tuple[Request, str], ...], committed: CommittedBlock
) -> BlockBody:
    """The stored body of a block that executed `run` out of its pre-prepare's batch."""
    reqs = committed.pre_prepare.requests
    skip_at: list[int] = []
    j = 0
    for i, r in enumerate(reqs):  # run is a subsequence of the batch (split_batch keeps order)
        if j < len(run) and (r is run[j] or r == run[j]):
            j += 1
        else:
            skip_at.append(i)
    if j != len(run):  # not a subsequence: keep the txs explicitly
        return BlockBody(run, skipped, committed)
    return BlockBody((), skipped, committed, True, tuple(skip_at))


class TxRecord(msgspec.Struct, frozen=True, array_like=True):
    client_id: bytes
    request_seq: int
    height: int
    index: int
    code: int
    result: bytes


class StateCert(msgspec.Struct, frozen=True, array_like=True):
    """A block's state certificate: 2f+1 StateVotes with equal roots, sorted by replica."""

    votes: tuple[StateVote, ...]


class ChainBase(msgspec.Struct, frozen=True, array_like=True):
    """Where the stored chain starts: (0, genesis prev hash) or an imported state's block."""

    height: int
    hash: bytes


_DECODERS: dict[type, msgspec.msgpack.Decoder] = {
    t: msgspec.msgpack.Decoder(t)
    for t in (
        BlockHeader,
        BlockBody,
        TxRecord,
        ChainBase,
        StateCert,
        ViewState,
        OwnVote,
        StableCheckpoint,
        CommittedBlock,
        PreparedCert,
        Conviction,
    )
}


def encode(value: Any) -> bytes:
    return encode_raw(value)


def decode(kind: type, data: bytes, key: bytes) -> Any:
    """Decode a stored value; an undecodable one is corruption, named by its key."""
    try:
        return _DECODERS[kind].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
        raise CorruptionError(
            f"undecodable {kind.__name__} at key {key[:40]!r} ({len(data)} bytes): {exc}"
        ) from exc
