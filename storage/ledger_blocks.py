"""Blocks into the ledger: `commit_blocks` checks each block against the chain and its results
against its txs, then writes body, app events (opaque bytes from the node), tx records, client
index, client tops (and, with the state tree on, floors and executed-seqs records: G), state
writes, the state tree's new version (when on: storage.merkle_tree) and headers in ONE batch
(meta height first, headers last; see storage.ledger). Each header holds the block's roots: the
state tree's root (with the tree on) and the results root (storage.results_root, always).
Imports: stdlib, consensus (events/codec),
storage.{keys,kv,interface,records,client_seqs,ledger_core}.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus import CommittedBlock
from consensus.codec import chain_digest, request_digest

from . import keys, tx_attrs
from .client_seqs import Seqs
from .interface import BlockCommit
from .kv import Op
from .ledger_core import WINDOW_CACHE_CLIENTS, LedgerCore
from .records import BlockHeader, TxRecord, body_for, encode
from .results_root import result_leaf, results_root


class LedgerBlocks(LedgerCore):
    """`commit_block`/`commit_blocks` and the per-client top they keep (see the module docstring)."""

    def commit_block(self, commit: BlockCommit) -> None:
        """Append block height+1 with certificate, state writes, tx index, client top and
        meta height in ONE synced batch. Nothing is written if any check fails."""
        self.commit_blocks((commit,))

    def commit_blocks(self, commits: Sequence[BlockCommit]) -> None:
        """Append consecutive blocks height+1.. in ONE synced batch (group commit: one fsync for
        all of them). Each block is checked as by `commit_block`, against the blocks before it
        in the group; nothing is written if any check fails. Layout: FIRST op raises the meta
        height to the last block, the header ops come LAST in ascending height, so a torn
        prefix always lacks the header of the meta height (see the module docstring)."""
        if not commits:
            return
        try:
            self._commit_blocks(commits)
        except BaseException:
            if self.auth is not None:
                self.auth.discard()
            raise
        if self.auth is not None:
            self.auth.landed()

    def _commit_blocks(self, commits: Sequence[BlockCommit]) -> None:
        auth = self.auth
        root = auth.root(self._height) if auth is not None else None
        tops: dict[bytes, int | None] = {}  # client tops as of the block being added (tree)
        h, last_hash = self._height, self._last_hash
        attrs_to = self._attrs_to
        ops: list[Op] = [(keys.META_HEIGHT, keys.u64(h + len(commits)))]  # first
        headers: list[Op] = []
        state_ops: list[Op] = []
        in_group: set[bytes] = set()  # C-keys written by earlier blocks of this group
        floors: dict[bytes, int] = {}  # client floors as of the block being added (tree)
        written: dict[bytes, list[tuple[int, bytes]]] = {}  # (seq, C-key) of this group (tree)
        per_client: dict[bytes, int] = {}  # highest request_seq committed by this group
        seqs: dict[bytes, Seqs] = {}  # executed-seqs records as of the block being added (tree)
        for commit in commits:
            ex = commit.execute
            changes: dict[bytes, bytes | None] = {}  # this block's writes to the tree
            if ex.seq != h + 1:
                self._fail(
                    "commit", f"{self.where}: block height {ex.seq} but the next is {h + 1}"
                )
            if ex.prev_hash != last_hash:
                self._fail(
                    "commit",
                    f"{self.where}: block {ex.seq} prev_hash {ex.prev_hash.hex()[:16]} "
                    f"!= last block hash {last_hash.hex()[:16]}",
                )
            if chain_digest(ex.prev_hash, ex.seq, ex.digest) != ex.block_hash:
                self._fail("commit", f"{self.where}: block {ex.seq} hash does not match its chain")
            if ex.pre_prepare.digest != ex.digest:
                self._fail("commit", f"{self.where}: block {ex.seq} digest != pre-prepare digest")
            if len(commit.results) != len(ex.requests):
                self._fail(
                    "commit",
                    f"{self.where}: block {ex.seq} has {len(ex.requests)} txs "
                    f"but {len(commit.results)} results",
                )
            ops.append(
                (
                    keys.body(ex.seq),
                    encode(
                        body_for(
                            tuple(ex.requests),
                            tuple(ex.skipped),
                            CommittedBlock(ex.pre_prepare, tuple(ex.commits)),
                        )
                    ),
                )
            )
            if commit.events is not None:  # before the header, like the body
                ops.append((keys.events(ex.seq), commit.events))
            if commit.attrs is not None and attrs_to == ex.seq - 1:
                ops.extend(tx_attrs.index_ops([(ex.seq, commit.attrs)]))
                attrs_to = ex.seq
            ops.append((keys.block_hash(ex.block_hash), keys.u64(ex.seq)))
            raised: set[bytes] = set()  # clients whose top this block raised (tree)
            touched: set[bytes] = set()  # clients with txs in this block (tree)
            for i, (req, res) in enumerate(zip(ex.requests, commit.results, strict=True)):
                th = request_digest(req)
                if (
                    res.tx_hash != th
                    or res.client_id != req.client_id
                    or res.request_seq != req.request_seq
                    or res.height != ex.seq
                ):
                    self._fail(
                        "commit",
                        f"{self.where}: block {ex.seq} result {i} does not describe tx {i} "
                        f"(hash/client/seq/height mismatch)",
                    )
                ck = keys.client_index(req.client_id, req.request_seq)
                if ck in in_group or (
                    not self._above_window(req.client_id, req.request_seq)
                    and self._kv.get(ck) is not None
                ):
                    self._fail(
                        "commit",
                        f"{self.where}: block {ex.seq} tx {i} re-executes request_seq "
                        f"{req.request_seq} of client {req.client_id.hex()[:16]} "
                        "(already committed)",
                    )
                in_group.add(ck)
                rec = encode(
                    TxRecord(
                        res.client_id, res.request_seq, res.height, res.index, res.code,
                        res.result,
                    )
                )
                ops.append((keys.tx(th), rec))
                ops.append((ck, th))
                if auth is not None:  # tx records: in the results root, not the tree
                    cid = res.client_id
                    written.setdefault(cid, []).append((res.request_seq, ck))
                    top = tops[cid] if cid in tops else self._client_top(cid)
                    if top is None or top < res.request_seq:
                        tops[cid] = res.request_seq
                        raised.add(cid)
                    rs = seqs[cid] if cid in seqs else self._seqs_at(self._kv, cid)
                    if rs is None:
                        rs = Seqs.first(res.request_seq, self.dedup_window)
                    else:
                        rs.add(res.request_seq)
                    seqs[cid] = rs
                    touched.add(cid)
                if per_client.get(res.client_id, -1) < res.request_seq:
                    per_client[res.client_id] = res.request_seq
            for cid in raised:
                self._raise_floor(cid, tops[cid], floors, written, ops)
            for cid in touched:
                g = (keys.client_seqs(cid), seqs[cid].encode())
                ops.append(g)
                changes[g[0]] = g[1]
            for k, v in commit.state_writes:  # in block order: a later block's write wins
                state_ops.append((keys.state(k), v))
                if auth is not None:
                    changes[keys.state(k)] = v
            state_root = commit.state_root
            if auth is not None:
                root = auth.update(ex.seq, root, changes)
                state_root = auth.root_hash(ex.seq)
            headers.append(
                (
                    keys.header(ex.seq),
                    encode(
                        BlockHeader(
                            ex.seq, ex.block_hash, ex.prev_hash, ex.digest, ex.time_ms, ex.view,
                            state_root, results_root([result_leaf(r) for r in commit.results]),
                        )
                    ),
                )
            )
            h, last_hash, last_time = ex.seq, ex.block_hash, ex.time_ms
        window_updates: dict[bytes, int] = {}
        for cid, top in per_client.items():
            op = self._top_op(cid, top, window_updates)
            if op is not None:
                ops.append(op)
        ops.extend(state_ops)
        if auth is not None:
            ops.extend(auth.take_ops())
            ops.extend(auth.prune_ops(h, self._kv))
        ops.extend(headers)  # last: the meta height's header proves the whole batch landed
        self._kv.write(ops, sync=self.sync_blocks)
        self._height = h
        self._attrs_to = attrs_to
        self._last_hash = last_hash
        self._last_time = last_time
        for cid, top in window_updates.items():
            self._windows.pop(cid, None)  # re-insert: most recently used last
            self._windows[cid] = top
        while len(self._windows) > WINDOW_CACHE_CLIENTS:
            self._windows.popitem(last=False)

    def _raise_floor(self, cid: bytes, top: int, floors: dict[bytes, int],
                     written: dict[bytes, list[tuple[int, bytes]]], ops: list[Op]) -> None:
        """With the state tree on: delete the client's C entries at or below `top -
        dedup_window` (no request at or below it can execute again) and record that floor
        (F), so the ledger keeps a window per client, not a key per tx for ever (the tree
        holds the client's G record instead). Reads the entries above the previous floor."""
        floor = top - self.dedup_window
        if floor <= 0:
            return
        old = floors[cid] if cid in floors else self._floor_at(self._kv, cid)
        if floor <= old:
            return
        gone = [k for k, _ in self._kv.items(keys.client_index(cid, old + 1),
                                              keys.client_index(cid, floor + 1))]
        gone += [k for seq, k in written.get(cid, ()) if old < seq <= floor]
        for k in gone:  # the KV holds earlier batches, `written` this one's: never both
            ops.append((k, None))
        floors[cid] = floor
        ops.append((keys.client_floor(cid), keys.u64(floor)))

    def _top_op(self, cid: bytes, top: int, window_updates: dict[bytes, int]) -> Op | None:
        """The client's highest executed request_seq, one key per client (W), rewritten only
        when it rises. The dedup window (seqs > top - dedup_window) is read back from the
        client index at recovery, so a tx writes no window entry and deletes none (the
        per-seq window keys and their tombstones were a fifth of the main DB's compaction
        bytes). `window_updates` reaches the cache only after the batch is written."""
        prev = window_updates.get(cid)
        if prev is None:
            prev = self._client_top(cid)
        if prev is not None and prev >= top:
            window_updates[cid] = prev
            return None
        window_updates[cid] = top
        return (keys.client_top(cid), keys.u64(top))
