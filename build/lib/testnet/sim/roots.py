"""Checker "honest replicas agree on the roots at every height", and the simulator's side of
state certificates.

With `SimOptions.authenticated_state` on (consensus `Config.state_votes`), every stored block's
roots (`Store.block_roots`) are stepped into its replica as `consensus.Executed`, exactly as
the node does. Checks: every honest replica stored the same (block_hash, state_root,
results_root) at each height ("roots-diverge"); every certificate an honest replica forms
certifies those roots ("false-certificate"); no honest replica raises a `StateDivergence`
("state-divergence"). Certificates are stored in each replica's MemoryStore.
Imports: stdlib, consensus, testnet.sim (types only).
"""

from __future__ import annotations

from typing import Any

from consensus import Executed, StateCertified, StateDivergence


class RootsChecker:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        # seq -> ((block_hash, state_root, results_root), first honest replica to store it)
        self.agreed: dict[int, tuple[tuple[bytes, bytes, bytes], int]] = {}

    def stored(self, node: Any, seq: int, block_hash: bytes) -> Executed | None:
        """The Executed event for block `seq` just stored by `node` (checked if honest)."""
        roots = node.store.block_roots(seq)
        if roots is None:
            return None
        value = (block_hash, roots[0], roots[1])
        if node.honest:
            first = self.agreed.setdefault(seq, (value, node.rid))
            if first[0] != value:
                self.cluster.violate(
                    "roots-diverge", node.rid,
                    f"seq {seq}: roots {_short(value)} but replica {first[1]} stored "
                    f"{_short(first[0])}")
        return Executed(seq, block_hash, roots[0], roots[1])

    def certified(self, node: Any, c: StateCertified) -> None:
        counts = self.cluster.counts
        counts["state_certificates"] = counts.get("state_certificates", 0) + 1
        v = c.votes[0]
        value = (v.block_hash, v.state_root, v.results_root)
        if node.honest:
            if len(c.votes) != self.cluster.config.quorum or len(
                    {x.replica for x in c.votes}) != len(c.votes):
                self.cluster.violate("bad-certificate", node.rid,
                                     f"seq {c.seq}: {len(c.votes)} votes, not 2f+1 distinct")
            first = self.agreed.get(c.seq)
            if first is not None and first[0] != value:
                self.cluster.violate(
                    "false-certificate", node.rid,
                    f"seq {c.seq}: certified {_short(value)} but honest replicas stored "
                    f"{_short(first[0])}")
        node.store.put_state_certificate(c.seq, c.votes)

    def diverged(self, node: Any, d: StateDivergence) -> None:
        if node.honest:
            self.cluster.violate(
                "state-divergence", node.rid,
                f"seq {d.seq}: ours {_short(d.ours)}, certified {_short(d.certified)}")


def _short(value: tuple[bytes, ...]) -> str:
    return "/".join(x[:4].hex() for x in value)
