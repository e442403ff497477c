"""The strategy names of `--byzantine I:STRATEGY` (simulator, `testnet up`, `testnet node`,
attack scenarios): the `STRATEGIES` table, `parse_strategy` and `parse_byzantine`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .context import Strategy
from .lying_reads import LyingReadsStrategy
from .protocol_attacks import (
    BadCheckpoint,
    BadRoots,
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
from .relay_attacks import RelayFlood, RelayPoison
from .wire_attacks import Bloat, CheckpointFlood, DeepNest, ForwardJunk, PoisonInts

# ---------------------------------------------------------------- registry and parsing

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "silent": Silent,
    "silent-primary": SilentPrimary,
    "crash-after": CrashAfter,
    "equivocate": Equivocate,
    "wrong-digest": WrongDigest,
    "forge": Forge,
    "replay": Replay,
    "future-view": FutureView,
    "slow": Slow,
    "fake-view-change": FakeViewChange,
    "invalid-new-view": InvalidNewView,
    "bad-checkpoint": BadCheckpoint,
    "bad-roots": BadRoots,
    "bad-sync": BadSync,
    "flood": Flood,
    "false-evidence": FalseEvidence,
    "poison-ints": PoisonInts,
    "deep-nest": DeepNest,
    "checkpoint-flood": CheckpointFlood,
    "bloat": Bloat,
    "forward-junk": ForwardJunk,
    "relay-poison": RelayPoison,
    "relay-flood": RelayFlood,
    "lying-reads": LyingReadsStrategy,  # lies in RPC answers (testnet node); honest in sim
}
"""Strategy names accepted by `--byzantine I:NAME` (`crash-after:K` takes a parameter; the
periodic ones a second, their period: `bloat:KIB:MS`)."""

_PARAMETRIZED = {"crash-after": int, "slow": float, "flood": int, "false-evidence": int,
                 "poison-ints": int, "deep-nest": int, "checkpoint-flood": int, "bloat": int,
                 "forward-junk": int, "relay-poison": int, "relay-flood": int,
                 "lying-reads": int}
_PERIODIC = {"deep-nest", "checkpoint-flood", "bloat", "forward-junk", "relay-poison",
             "relay-flood"}  # NAME:P:MS too


def parse_strategy(spec: str) -> Strategy:
    """`"silent"` or `"crash-after:5"` -> a fresh Strategy; ValueError names what is wrong."""
    name, _, param = spec.strip().partition(":")
    if name not in STRATEGIES:
        raise ValueError(f"unknown byzantine strategy {name!r}; known: {', '.join(STRATEGIES)}")
    if param:
        conv = _PARAMETRIZED.get(name)
        if conv is None:
            raise ValueError(f"strategy {name!r} takes no parameter (got {param!r})")
        first, _, every = param.partition(":")
        if every and name not in _PERIODIC:
            raise ValueError(f"strategy {name!r} takes one parameter (got {param!r})")
        try:
            return STRATEGIES[name](conv(first), *([int(every)] if every else []))
        except ValueError as exc:
            raise ValueError(f"bad parameter for {name!r}: {param!r} ({exc})") from None
    if name == "crash-after":
        raise ValueError("crash-after needs a parameter: crash-after:K")
    return STRATEGIES[name]()


def parse_byzantine(specs: Sequence[str], n: int | None = None) -> dict[int, list[str]]:
    """Parse repeated `I:STRATEGY[,I:STRATEGY…]` options into {replica: [strategy specs]}.

    A replica named several times gets all its strategies, applied in the given order."""
    result: dict[int, list[str]] = {}
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            idx, sep, strat = item.partition(":")
            if not sep or not idx.strip().isdigit():
                raise ValueError(f"bad --byzantine item {item!r}: expected I:STRATEGY")
            rid = int(idx)
            if n is not None and not 0 <= rid < n:
                raise ValueError(f"bad --byzantine item {item!r}: replica {rid} not in 0..{n - 1}")
            parse_strategy(strat)  # validate early
            result.setdefault(rid, []).append(strat.strip())
    return result


