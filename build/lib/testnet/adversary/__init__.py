"""The testnet's adversary: Byzantine replicas and faulty links, outside the product.

A node gets them only through `bftnode.node.build.build_node`'s seams (`replica_factory`,
`wrap_transport`), wired by `python -m testnet node` (`node.py`); the simulator wraps its
replicas in `ByzantineReplica` directly.

- `context.py`: `DetRng`, `Collusion`, `ByzContext`, the `Strategy` base class, `_Periodic`
- `protocol_attacks.py`: strategies that lie in the protocol (`silent`, `equivocate`, `forge`, …)
- `wire_attacks.py`: hostile wire input (`poison-ints`, `deep-nest`, `checkpoint-flood`, `bloat`,
  `forward-junk`)
- `relay_attacks.py`: hostile relayed client requests (`relay-poison`, `relay-flood`)
- `strategies.py`: the name table `STRATEGIES`, `parse_strategy`, `parse_byzantine`
- `byzantine_replica.py`: `ByzantineReplica`, an honest replica whose Output strategies rewrite
- `link_faults.py`: `FaultyTransport`, link faults driven by a live rules file (imported on its
  own: it needs trio)
- `node.py`: `python -m testnet node`, a node with the strategies and link faults of its home

This package re-exports the strategy names (pure: consensus, msgspec and the stdlib only).
"""

from .byzantine_replica import ByzantineReplica
from .context import ByzContext, Collusion, DetRng, Strategy
from .protocol_attacks import (
    BadCheckpoint,
    BadSync,
    CrashAfter,
    Equivocate,
    FakeViewChange,
    FalseEvidence,
    Flood,
    Forge,
    FutureView,
    InvalidNewView,
    Replay,
    Silent,
    SilentPrimary,
    Slow,
    WrongDigest,
)
from .relay_attacks import (
    FORWARD_CHUNK_BYTES,
    RELAY_FLOOD_KEYS,
    RELAY_FLOOD_VALUE_BYTES,
    RelayFlood,
    RelayPoison,
    poison_ops,
    relay_flood_op,
    relay_flood_signer,
    relay_poison_signer,
)
from .strategies import STRATEGIES, parse_byzantine, parse_strategy
from .wire_attacks import (
    POISON_INTS,
    Bloat,
    CheckpointFlood,
    DeepNest,
    ForwardJunk,
    PoisonInts,
)

__all__ = [name for name in dir() if not name.startswith("_")]
