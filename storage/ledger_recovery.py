"""Recovery: `recover` rebuilds a replica's durable state from the ledger and verifies the hash
chain past the verified marker (torn blocks, gaps, broken links and undecodable records raise
CorruptionError; nothing is repaired silently); `client_histories` reads the dedup windows the
replica's bounded client table left out; `verify_chain` checks every block from the base.
Imports: stdlib, consensus (events/codec), storage.{keys,kv,interface,records,ledger_core,
ledger_records}.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus import (
    Conviction,
    OwnVote,
    PreparedCert,
    RecoveredState,
    StableCheckpoint,
    ViewState,
)
from consensus.codec import chain_digest, request_digest

from . import keys
from .interface import CorruptionError
from .kv import KV, KVReader, Op
from .ledger_core import LedgerCore, log
from .ledger_records import vote_key
from .records import BlockBody, BlockHeader, decode

INDEX_BATCH = 10_000  # block-hash index entries per batch when an older ledger is indexed


class LedgerRecovery(LedgerCore):
    """`recover`, `client_histories`, `verify_chain` (see the module docstring)."""

    def recover(self, max_clients: int | None = None) -> RecoveredState:
        """Rebuild the replica's durable state; verify the hash chain past the verified marker.
        `max_clients`: restore the dedup windows of at most this many clients (the replica
        loads the others when they return: `client_histories`); None = all.

        Raises CorruptionError naming what is wrong (torn block, gap, broken chain,
        undecodable record); nothing is repaired silently."""
        kv = self._kv
        if kv.get(keys.META_IMPORTING) is not None:
            self._fail(
                "corrupt",
                f"{self.where}: a state import was interrupted; import again or resync",
                CorruptionError,
            )
        height = self._meta_u64(kv, keys.META_HEIGHT)
        verified = self._meta_u64(kv, keys.META_VERIFIED)
        base = self._base(kv)
        if not base.height <= verified <= max(height, base.height):
            self._fail(
                "corrupt",
                f"{self.where}: verified marker {verified} outside [{base.height}, {height}]",
                CorruptionError,
            )
        if height > base.height and kv.get(keys.header(height)) is None:
            self._fail(
                "corrupt",
                f"{self.where}: meta height is {height} but block {height} is missing "
                "(torn write or lost data)",
                CorruptionError,
            )
        beyond = next(iter(kv.items(keys.header(height + 1), keys.prefix_end(keys.HEADER))), None)
        if beyond is not None:
            self._fail(
                "corrupt",
                f"{self.where}: block {keys.from_u64(beyond[0][1:])} stored above meta height "
                f"{height}",
                CorruptionError,
            )
        if verified > base.height:
            hdr = self._header_at(kv, verified)
            if hdr is None:
                self._fail(
                    "corrupt", f"{self.where}: verified block {verified} missing", CorruptionError
                )
            prev = hdr.hash
        else:
            prev = base.hash
        expect = verified + 1
        for k, v in kv.items(keys.header(expect), keys.header(height + 1)):
            hk = keys.from_u64(k[1:])
            if hk != expect:
                self._fail(
                    "corrupt", f"{self.where}: gap in blocks: {expect} missing", CorruptionError
                )
            hdr = decode(BlockHeader, v, k)
            if hdr.height != hk or hdr.prev_hash != prev:
                self._fail(
                    "corrupt",
                    f"{self.where}: block {hk} does not link to block {hk - 1}",
                    CorruptionError,
                )
            if chain_digest(hdr.prev_hash, hdr.height, hdr.digest) != hdr.hash:
                self._fail(
                    "corrupt", f"{self.where}: block {hk} hash is not its chain digest",
                    CorruptionError,
                )
            prev = hdr.hash
            expect += 1
        if expect != height + 1:
            self._fail(
                "corrupt", f"{self.where}: gap in blocks: {expect} missing", CorruptionError
            )
        last_time = 0
        if height > base.height or kv.get(keys.header(height)) is not None:
            last = self._header_at(kv, height)
            if last is not None:
                last_time = last.time_ms
                self._check_block_complete(kv, last)
        if verified != height:
            kv.write([(keys.META_VERIFIED, keys.u64(height))], sync=False)

        raw = kv.get(keys.VIEW_KEY)
        vs = ViewState(0, False) if raw is None else decode(ViewState, raw, keys.VIEW_KEY)
        votes = []
        for k, v in kv.items(keys.VOTE, keys.prefix_end(keys.VOTE)):
            rec = decode(OwnVote, v, k)
            if vote_key(rec.message) != k:
                self._fail(
                    "corrupt", f"{self.where}: own vote stored under the wrong key {k!r}",
                    CorruptionError,
                )
            votes.append(rec.message)
        prepared = []
        for k, v in kv.items(keys.PREPARED, keys.prefix_end(keys.PREPARED)):
            proof = decode(PreparedCert, v, k).proof
            if keys.prepared(proof.pre_prepare.view, proof.pre_prepare.seq) != k:
                self._fail(
                    "corrupt", f"{self.where}: prepared certificate under the wrong key {k!r}",
                    CorruptionError,
                )
            prepared.append(proof)
        convicted = []
        for k, v in kv.items(keys.CONVICTION, keys.prefix_end(keys.CONVICTION)):
            conv = decode(Conviction, v, k)
            if keys.conviction(conv.replica) != k:
                self._fail(
                    "corrupt", f"{self.where}: conviction stored under the wrong key {k!r}",
                    CorruptionError,
                )
            convicted.append(conv)
        convicted.sort(key=lambda c: (c.seq, c.replica))
        raw = kv.get(keys.CHECKPOINT_KEY)
        cp = None if raw is None else decode(StableCheckpoint, raw, keys.CHECKPOINT_KEY)
        self._fold_legacy_window(kv)
        self._index_block_hashes(kv)
        clients: dict[bytes, tuple[int, ...]] = {}
        complete = True
        for k, v in kv.items(keys.CLIENT_TOP, keys.prefix_end(keys.CLIENT_TOP)):
            if max_clients is not None and len(clients) >= max_clients:
                complete = False
                break
            try:
                cid = keys.parse_client_top(k)
            except ValueError as exc:
                self._fail("corrupt", f"{self.where}: {exc}", CorruptionError)
            clients[cid] = self._client_window(kv, cid, self._u64_value(k, v))
        self._load_tip()
        return RecoveredState(
            view=vs.view,
            in_view_change=vs.in_view_change,
            own_votes=tuple(votes),
            stable_checkpoint=cp,
            last_executed=height,
            last_block_hash=prev,
            last_time_ms=last_time,
            client_executed=clients,
            clients_complete=complete,
            prepared=tuple(prepared),
            convicted=tuple(convicted),
        )

    def _client_window(self, kv: KV, cid: bytes, top: int) -> tuple[int, ...]:
        """The client's executed request_seqs in (top - dedup_window, top], ascending: from
        its G record with the state tree on (a state import brings no client index)."""
        if self.auth is not None:
            rec = self._seqs_at(kv, cid)
            if rec is not None and rec.top == top:
                return rec.seqs()
        lo = max(0, top - self.dedup_window + 1)
        return tuple(
            keys.from_u64(ck[-8:])
            for ck, _ in kv.items(keys.client_index(cid, lo), keys.client_index(cid, top + 1))
        )

    def client_histories(
        self, client_ids: Sequence[bytes]
    ) -> tuple[int, tuple[tuple[bytes, tuple[int, ...]], ...]]:
        """(height, each client's dedup window as `recover` restores it) for clients the
        replica's bounded table left out (consensus.LoadClients). The height is read first:
        the windows reflect at least every block through it."""
        height = self._height
        out = []
        for cid in client_ids:
            if len(cid) > 255:
                out.append((cid, ()))
                continue
            top = self._client_top(cid)
            out.append((cid, () if top is None else self._client_window(self._kv, cid, top)))
        return height, tuple(out)

    def _index_block_hashes(self, kv: KV) -> None:
        """Ledgers written before the block-hash index (B) get it once: every stored header's
        hash -> height, in batches, the done mark last (an interrupted run is repeated)."""
        if kv.get(keys.META_BLOCK_INDEX) is not None:
            return
        ops: list[Op] = []
        n = 0
        for k, v in kv.items(keys.HEADER, keys.prefix_end(keys.HEADER)):
            hdr = decode(BlockHeader, v, k)
            ops.append((keys.block_hash(hdr.hash), keys.u64(hdr.height)))
            n += 1
            if len(ops) >= INDEX_BATCH:
                kv.write(ops, sync=False)
                ops = []
        ops.append((keys.META_BLOCK_INDEX, b"\x01"))
        kv.write(ops, sync=True)
        if n:
            log.info("storage.block_hashes_indexed", where=self.where, blocks=n)

    def _fold_legacy_window(self, kv: KV) -> None:
        """Ledgers before session 5 kept one E-key per executed seq in the dedup window:
        fold them into the per-client top (W) and delete them, in one synced batch."""
        tops: dict[bytes, int] = {}
        ops: list[Op] = []
        for k, _v in kv.items(keys.CLIENT_WINDOW, keys.prefix_end(keys.CLIENT_WINDOW)):
            try:
                cid, seq = keys.parse_client_window(k)
            except ValueError as exc:
                self._fail("corrupt", f"{self.where}: {exc}", CorruptionError)
            tops[cid] = max(tops.get(cid, seq), seq)
            ops.append((k, None))
        if not ops:
            return
        for cid, top in tops.items():
            raw = kv.get(keys.client_top(cid))
            if raw is None or self._u64_value(keys.client_top(cid), raw) < top:
                ops.append((keys.client_top(cid), keys.u64(top)))
        kv.write(ops, sync=True)
        self._windows.clear()
        log.info("storage.client_window_folded", where=self.where, clients=len(tops),
                 keys=len(ops))
        if self.auth is not None:  # the tree covers the client tops just written
            self._rebuild_auth()

    def _check_block_complete(self, kv: KVReader, hdr: BlockHeader) -> None:
        """The last block's body decodes and every tx of it is indexed (or below its client's
        floor: its client-index entry was deleted with the block)."""
        raw = kv.get(keys.body(hdr.height))
        if raw is None:
            self._fail(
                "corrupt", f"{self.where}: block {hdr.height} body missing", CorruptionError
            )
        body = decode(BlockBody, raw, keys.body(hdr.height))
        if body.committed.pre_prepare.digest != hdr.digest:
            self._fail(
                "corrupt",
                f"{self.where}: block {hdr.height} certificate does not match its header",
                CorruptionError,
            )
        for req in body.executed():
            th = request_digest(req)
            indexed = kv.get(keys.client_index(req.client_id, req.request_seq))
            if indexed is None and 0 < req.request_seq <= self._floor_at(kv, req.client_id):
                indexed = th  # the same block moved its client's window past it (keys F)
            if kv.get(keys.tx(th)) is None or indexed != th:
                self._fail(
                    "corrupt",
                    f"{self.where}: tx {th.hex()[:16]} of block {hdr.height} is not indexed",
                    CorruptionError,
                )

    def verify_chain(self) -> int:
        """Full check of every stored block from the chain base (ignores the marker)."""
        kv = self._kv
        base = self._base(kv)
        kv.write([(keys.META_VERIFIED, keys.u64(base.height))], sync=True)
        self.recover()
        return self._height
