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
    state_root: bytes


class BlockBody(msgspec.Struct, frozen=True, array_like=True):
    txs: tuple[Request, ...]  # executed, in order
    skipped: tuple[tuple[Request, str], ...]  # in the batch but not executed, with the reason
    committed: CommittedBlock  # pre-prepare + commit certificate


class TxRecord(msgspec.Struct, frozen=True, array_like=True):
    client_id: bytes
    request_seq: int
    height: int
    index: int
    code: int
    result: bytes


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
