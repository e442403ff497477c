"""A tiny chain driver for the application: blocks of (client, op) at agreed times.

(Its own module name, not conftest, so `from app_chain import Chain` never picks up another
directory's conftest.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from bftnode.app import AppEvent, KVApplication, MemoryState, ops
from consensus import Request


@dataclass
class Block:
    height: int
    time_ms: int
    results: list[tuple[int, dict]]
    events: tuple[AppEvent, ...]

    def ok(self, i: int = 0) -> dict:
        code, res = self.results[i]
        assert code == 0, res
        return res

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@dataclass
class Chain:
    app: KVApplication = field(default_factory=KVApplication)
    state: MemoryState = field(default_factory=MemoryState)
    height: int = 0
    time_ms: int = 1_000
    seq: int = 0
    log: list = field(default_factory=list)  # (height, time, txs): replayable

    def block(self, *txs, at: int | None = None, dt: int = 100, client: bytes = b"alice"):
        """Execute one block; each tx is op bytes (signed by `client`) or (client, op)."""
        self.height += 1
        self.time_ms = at if at is not None else self.time_ms + dt
        reqs = []
        for tx in txs:
            cid, op = tx if isinstance(tx, tuple) else (client, tx)
            self.seq += 1
            reqs.append(Request(cid, self.seq, op))
        self.log.append((self.height, self.time_ms, tuple(reqs)))
        eff = self.app.execute_block(self.state, self.height, self.time_ms, reqs)
        self.state.apply(eff.writes)
        return Block(
            self.height,
            self.time_ms,
            [(c, ops.decode_result(r)) for c, r in eff.results],
            eff.events,
        )

    def query(self, method: str, **params) -> dict:
        return self.app.query(self.state, method, params, self.height, self.time_ms)
