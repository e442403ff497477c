"""State roots on the node: each stored block's roots go to the replica (`Executed`), the
certificates it forms are stored, a divergence is raised loudly.

`StateRootsMixin` (part of `Node`): `_feed_executed` queues `consensus.Executed` for each block
the executor stored (stepped by the replica task with its next group, through the loopback);
`_on_state_certified` stores a `StateCertified` action's votes (`Store.put_state_certificate`)
at once if no block write is in flight, else right after it (`_flush_certificates`, called by
the executor task): a small LevelDB write waits for a big batch in flight (measured: p99 16 ms
behind a block batch), and it runs on the event loop;
`_on_state_divergence` logs the alarm at error level and counts it; `state_certificate` reads
one back. Only with `consensus_config.state_votes` on (the store keeps the state tree).
Imports: stdlib, consensus, storage.interface.
"""

from __future__ import annotations

from typing import Any

from consensus import Executed, StateCertified, StateDivergence
from storage.interface import StateCertificate


class StateRootsMixin:
    """The node's side of state certificates (docs/protocol.md "State roots and
    certificates")."""

    def _feed_executed(self, seq: int, block_hash: bytes) -> None:
        """Block `seq` is stored: hand its roots to the replica task (the executor never steps
        the replica itself)."""
        if not self.consensus_config.state_votes:
            return
        roots = self.store.block_roots(seq)
        if roots is None:  # cannot happen right after the commit; never vote on a guess
            self.log.warning("no roots for a stored block", height=seq)
            return
        self._loopback.append(Executed(seq, block_hash, roots[0], roots[1]))

    def _on_state_certified(self, c: StateCertified) -> None:
        self._certs_pending.append(c)
        if self._exec_done == self._exec_queued:  # no block write in flight
            self._flush_certificates()

    def _flush_certificates(self) -> None:
        if not self._certs_pending:
            return
        pending, self._certs_pending = self._certs_pending, []
        for c in pending:
            self.store.put_state_certificate(c.seq, c.votes)
        self.metrics.state_certificates.set(self.store.latest_certified())

    def _on_state_divergence(self, d: StateDivergence) -> None:
        self.metrics.state_divergences.inc()
        names = ("block_hash", "state_root", "results_root")
        self.log.error(
            "state divergence: 2f+1 validators certify other roots than ours", height=d.seq,
            **{f"our_{k}": v.hex() for k, v in zip(names, d.ours, strict=True)},
            **{f"certified_{k}": v.hex() for k, v in zip(names, d.certified, strict=True)})
        self._evidence.append({
            "kind": "state-divergence", "replica": self.index, "height": d.seq,
            "reason": "2f+1 validators certify other roots than ours", "time_ms": self._last_now,
            "messages": [],
        })

    def state_certificate(self, height: int | None = None) -> StateCertificate | None:
        """The stored state certificate of block `height` (None: the latest certified one);
        None if there is none."""
        store: Any = self.store
        if height is None:
            height = store.latest_certified()
            if height == 0:
                return None
        return store.state_certificate(height)
