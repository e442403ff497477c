"""The shell's side of snapshot catch-up and block pruning, shared by the node and the
simulator (synchronous: the node runs it in a worker thread).

`SnapshotShell.serve` answers the replica's `ServeSnapshot`: one held LevelDB snapshot per
fetching peer (at most MAX_SESSIONS, idle ones closed after SESSION_IDLE_S) at the latest
certified height this node can serve, read page by page (storage.ledger_snapshot).
`SnapshotShell.check` answers `CheckSnapshotChunk`: the first page's block and roots
certificate (consensus.phases.snapshot.check_first_page), each page's range proof against the
certified root (storage.snapshot.verify_page), staged; after the last page the import is
finished (the tree rebuilt and compared with the certified root); the caller persists the
convictions the snapshot's state records (`snapshot_convictions`) and restores the replica
from storage. `prune_step` deletes old blocks in one bounded step per commit.

Certificates come from ONE source, `certificates()` -> the latest
storage.interface.StateCertificate (the protocol's StateVotes, stored by
bftnode.node.state_roots); `store_certificates(store)` reads it from the store
(`latest_certified` / `state_certificate`), None if it has none yet. An installed snapshot's
certificate is stored too, so the node serves and proves that height.
Imports: stdlib, consensus, storage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus import (
    Authenticator,
    CheckSnapshotChunk,
    Config,
    Conviction,
    ServeSnapshot,
    SnapshotChecked,
    SnapshotChunk,
    SnapshotRead,
)
from consensus.phases.snapshot import check_first_page
from storage import ProofError, StaleVersion, StorageError
from storage.interface import StateCertificate
from storage.ledger_prune import PRUNE_STEP_BLOCKS, prune_below
from storage.snapshot import verify_page

MAX_SESSIONS = 2  # peers served at once (each holds a LevelDB snapshot: pinned disk)
SESSION_IDLE_S = 30.0


CertificateSource = Callable[[], StateCertificate | None]


def store_certificates(store: Any) -> CertificateSource:
    """The latest state certificate the store holds (None: none yet)."""

    def latest() -> StateCertificate | None:
        h = store.latest_certified()
        return store.state_certificate(h) if h else None

    return latest


def snapshot_convictions(app: Any, store: Any) -> list[Conviction]:
    """The convictions an installed snapshot's state records (the app's `convictions`), as the
    records a node persists so that its replica (`recover()`) knows them."""
    read = getattr(app, "convictions", None)
    return [] if read is None else [Conviction(r, h, k) for r, h, k in read(store.state())]


@dataclass(slots=True)
class _Session:
    height: int
    held: Any
    first: SnapshotChunk  # the first page's block, prev hash and certificate
    used: float


@dataclass(slots=True)
class _Fetch:
    peer: int
    height: int
    block_hash: bytes
    state_root: bytes
    results_root: bytes
    chunk: SnapshotChunk  # the first page


class SnapshotShell:
    """Serving and checking snapshot pages for one replica (see the module docstring)."""

    def __init__(self, store: Any, config: Config, auth: Authenticator, index: int,
                 certificates: CertificateSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.config = config
        self.auth = auth
        self.index = index
        self.certificates = certificates or store_certificates(store)
        self.clock = clock
        self._sessions: dict[int, _Session] = {}
        # serve (the replica's worker thread) and prune_step (the executor's) both expire
        self._lock = threading.Lock()
        self._fetch: _Fetch | None = None
        self.installed = 0  # snapshots installed
        self.served_pages = 0

    # ------------------------------------------------------------------ pruning

    def serve_floor(self) -> int:
        """The height of the snapshot we serve (0: none)."""
        cert = self.certificates()
        return 0 if cert is None else cert.seq

    def prune_step(self, retain_blocks: int, stable_seq: int) -> int:
        """One bounded pruning step (PRUNE_STEP_BLOCKS blocks at most); the new base. Blocks
        from the served snapshot's height on are kept (without one: from the stable
        checkpoint on; a peer behind our base then cannot catch up from us)."""
        self._expire()
        if retain_blocks <= 0:
            return self.store.base_height()
        floor = self.serve_floor() or stable_seq
        below = prune_below(self.store.height(), retain_blocks, floor)
        return self.store.prune_blocks(below, PRUNE_STEP_BLOCKS)

    def pruned_answer(self, from_seq: int) -> tuple[int, int]:
        """(lowest kept block, snapshot height served) when a fetch starts below our base,
        else (0, 0): the replica then answers BLOCKS-PRUNED."""
        base = self.store.base_height()
        if from_seq >= base:
            return 0, 0
        return base, self.serve_floor()

    # ------------------------------------------------------------------ serving

    def _expire(self) -> None:
        with self._lock:
            now = self.clock()
            for peer, s in list(self._sessions.items()):
                if now - s.used > SESSION_IDLE_S:
                    s.held.close()
                    del self._sessions[peer]

    def serve(self, act: ServeSnapshot) -> SnapshotRead | None:
        """The page asked for, or None (no snapshot to serve, too many sessions, a page of a
        session that is gone): the fetching peer then gives up on us and asks another."""
        self._expire()
        with self._lock:
            return self._serve(act)

    def _serve(self, act: ServeSnapshot) -> SnapshotRead | None:
        s = self._sessions.get(act.to)
        if act.after_key == b"":
            if s is not None:
                s.held.close()
                del self._sessions[act.to]
            s = self._open(act.to)
        if s is None or (act.height and act.height != s.height):
            return None
        s.used = self.clock()
        try:
            page = self.store.snapshot_page(s.held, s.height, act.after_key)
        except (StaleVersion, StorageError):
            return None
        self.served_pages += 1
        first = s.first if act.after_key == b"" else None
        return SnapshotRead(act.to, SnapshotChunk(
            s.height, act.after_key, page.items, page.proof, page.more,
            first.block if first else None, first.prev_hash if first else b"",
            first.certificate if first else (), self.index))

    def _open(self, peer: int) -> _Session | None:
        if len(self._sessions) >= MAX_SESSIONS or getattr(self.store, "auth", None) is None:
            return None
        cert = self.certificates()
        if cert is None:
            return None
        block = self.store.block(cert.seq)
        if block is None:
            return None
        held = self.store.open_snapshot()
        first = SnapshotChunk(cert.seq, b"", (), b"", False, block.committed, block.prev_hash,
                              tuple(cert.votes), self.index)
        s = _Session(cert.seq, held, first, self.clock())
        self._sessions[peer] = s
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._sessions.values():
                s.held.close()
            self._sessions.clear()

    # ------------------------------------------------------------------ fetching

    def check(self, act: CheckSnapshotChunk) -> tuple[SnapshotChecked, bool]:
        """(the verdict for the replica, whether the snapshot is now installed)."""
        m, peer = act.chunk, act.sender

        def refuse(reason: str) -> tuple[SnapshotChecked, bool]:
            self._fetch = None
            return SnapshotChecked(peer, m.height, None, reason[:200]), False

        def quit_quietly() -> tuple[SnapshotChecked, bool]:
            self._fetch = None
            return SnapshotChecked(peer, m.height, None), False

        if m.height <= self.store.height() or getattr(self.store, "auth", None) is None:
            return quit_quietly()  # caught up meanwhile, or we keep no state tree
        if m.after_key == b"":
            reason = check_first_page(self.config, self.auth, m)
            if reason:
                return refuse(f"snapshot certificate: {reason}")
            v = m.certificate[0]
            self._fetch = _Fetch(peer, m.height, v.block_hash, v.state_root, v.results_root, m)
            self.store.begin_import(m.height)
        f = self._fetch
        if f is None or f.peer != peer or f.height != m.height:
            return quit_quietly()  # a page of a fetch this shell does not know (restarted)
        try:
            nxt = verify_page(f.state_root, m.after_key, m.items, m.proof, m.more)
        except ProofError as exc:
            return refuse(f"snapshot page: {exc}")
        self.store.import_page(m.items)
        if nxt is not None:
            return SnapshotChecked(peer, m.height, nxt), False
        first = f.chunk
        assert first.block is not None
        try:
            self.store.finish_import(f.height, f.block_hash, first.block, first.prev_hash,
                                     f.state_root, f.results_root)
        except StorageError as exc:
            return refuse(f"snapshot import: {exc}")
        self.store.put_state_certificate(f.height, first.certificate)
        self._fetch = None
        self.installed += 1
        return SnapshotChecked(peer, m.height, None), True
