"""Definitive outcomes: the default `valid_until` of every tx the client signs, and waiting
until a signed tx is COMMITTED or EXPIRED (docs/consistency.md "Outcomes").

`Horizon` keeps the highest block height this client has seen (from commits and `status`),
turns it into a tx's default `valid_until` (that height + `valid_blocks`), and remembers the
`valid_until` of the txs it signed, so `tx_status` by bare hash can tell any node the expiry
height. `wait_outcome` is a `core.Flow` (sans-I/O) over the client's `Core`.
Imports: stdlib, consensus, bftnode.client.{core,errors}.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Protocol

from consensus import Request, request_digest

from .core import Flow, Sleep
from .errors import ClientError, TxTimeout

# Blocks ahead of the latest known height a tx stays valid by default. Saturated, the chain
# makes ~20-30 blocks/s (~100 txs each, docs/performance.md) and never more than ~50/s with
# small blocks, so 3,000 blocks is >= 60 s of heavy load: longer than the longest
# broadcast_tx_commit wait (60 s) and than a full pool takes to drain. Idle (one heartbeat
# block per `heartbeat_ms`, 1 s by default) a lost tx turns EXPIRED within ~50 minutes.
DEFAULT_VALID_BLOCKS = 3_000
HEIGHT_REFRESH_S = 5.0  # ask `status` again when the known height is older than this
SIGNED_KEPT = 10_000  # signed txs whose valid_until is remembered for tx_status by hash
FINAL = ("COMMITTED", "EXPIRED")


class _Caller(Protocol):
    """What `Horizon` and `wait_outcome` need of `flows.Core`."""

    clock: Callable[[], float]

    def call(self, method: str, **params: Any) -> Flow: ...

    def tx_status(self, tx: str | bytes | Request, url: str | None = None) -> Flow: ...

    @property
    def urls(self) -> list[str]: ...


class Horizon:
    """The client's view of the chain height, for default `valid_until`s."""

    def __init__(self, valid_blocks: int = DEFAULT_VALID_BLOCKS) -> None:
        if valid_blocks < 0:
            raise ValueError("valid_blocks must be >= 0 (0: txs never expire)")
        self.valid_blocks = valid_blocks
        self.height = 0
        self._seen_at: float | None = None  # client clock when `height` was last raised
        self._signed: collections.OrderedDict[bytes, int] = collections.OrderedDict()

    def saw(self, height: Any, now: float) -> None:
        """A height some answer reported (the highest one counts: a lagging node's lower
        height only makes a later tx expire sooner, never later)."""
        if isinstance(height, int) and not isinstance(height, bool) and height >= self.height:
            self.height = height
            self._seen_at = now

    def valid_until(self, core: _Caller) -> Flow:
        """The default `valid_until` of a tx signed now (0 when `valid_blocks` is 0)."""
        if not self.valid_blocks:
            return 0
        now = core.clock()
        if self._seen_at is None or now - self._seen_at > HEIGHT_REFRESH_S:
            try:
                status = yield from core.call("status")
                self.saw(status.get("height") if isinstance(status, dict) else None, now)
            except ClientError as exc:
                if self._seen_at is None:  # nothing was sent: no tx can be pending
                    raise TxTimeout(f"tx not confirmed: no node answered 'status' to set its "
                                    f"valid_until ({exc})") from exc
            self._seen_at = now  # an idle chain's height does not move: do not ask each tx
        return self.height + self.valid_blocks

    def signed(self, req: Request) -> None:
        if req.valid_until:
            self._signed[request_digest(req)] = req.valid_until
            while len(self._signed) > SIGNED_KEPT:
                self._signed.popitem(last=False)

    def valid_until_of(self, tx_hash: bytes) -> int | None:
        """The `valid_until` of a tx this client signed (and still remembers)."""
        return self._signed.get(tx_hash)


def wait_outcome(core: _Caller, req: Request, timeout: float, every: float = 0.2) -> Flow:
    """Poll `tx_status` with the signed tx, through every node in turn, until one answers
    COMMITTED or EXPIRED (a node that never saw the tx judges expiry from the tx itself);
    returns that answer. A tx signed with `valid_until` = 0 can only end COMMITTED. Raises
    TxTimeout (with the last answer in `data`) when `timeout` passes first."""
    deadline = core.clock() + timeout
    last: Any = None
    while True:
        for u in core.urls:
            try:
                st = yield from core.tx_status(req, url=u)
            except ClientError as exc:  # that node is down or cannot answer: the next one
                last = exc
                continue
            last = st
            if isinstance(st, dict) and st.get("status") in FINAL:
                return st
        if core.clock() >= deadline:
            raise TxTimeout(f"tx {request_digest(req).hex()} has no definitive outcome within "
                            f"{timeout:g}s (valid_until {req.valid_until}): {last}",
                            data={"hash": request_digest(req).hex(), "last": str(last)})
        yield Sleep(every)
