"""`python -m testnet node --home H [--byzantine S ...] [--link-faults F]`: a testnet node.

Runs the node of home H the way `bftnode start --home H` does (`bftnode.cli.run_start`, same
start-up checks, signals, exit codes and `BFTNODE_PROFILE`), but builds it through
`build_node`'s seams with the testnet's adversary: `replica_factory` wraps the honest replica
in a `ByzantineReplica` running the node's strategies, `wrap_transport` puts a
`FaultyTransport` reading the node's link rules file around its libp2p transport, and
`clock_ms` a `SkewedClock` reading HOME/clock-offset (clock-skew faults; adversary/clock.py).

What a node gets: H/adversary.json (written by `testnet up`, see `write_adversary`) plus the
flags. Strategies: the file's, then the flags' (applied in that order); `--link-faults`
replaces the file's rules file. adversary.json, both keys optional, paths relative to H:
    {"byzantine": ["silent-primary", "fake-view-change"], "link_faults_file": "link-faults.json"}

This is the one place under testnet/ that imports `build_node`. It and the link faults
(trio) are imported when a node is built, so the launcher reads and writes adversary files
without loading the node.
Imports: stdlib, bftnode (node.build, cli), consensus, testnet.adversary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .byzantine_replica import ByzantineReplica
from .lying_reads import LyingReads, LyingReadsStrategy
from .strategies import parse_strategy

ADVERSARY_FILE = "adversary.json"


class AdversaryError(ValueError):
    """A node's adversary file or flags are invalid (the message says which and why)."""


@dataclass(frozen=True)
class Adversary:
    """A testnet node's Byzantine strategies (specs, in order) and link rules file."""

    byzantine: tuple[str, ...] = ()
    link_faults_file: str = ""  # "" = no link faults; relative paths are relative to the home

    @classmethod
    def from_json(cls, data: Any, where: str = ADVERSARY_FILE) -> Adversary:
        if not isinstance(data, dict):
            raise AdversaryError(f"{where}: expected a JSON object")
        unknown = set(data) - {"byzantine", "link_faults_file"}
        if unknown:
            raise AdversaryError(f"{where}: unknown field(s) {sorted(unknown)}")
        byz = data.get("byzantine", [])
        if not isinstance(byz, list) or not all(isinstance(s, str) for s in byz):
            raise AdversaryError(f"{where}: field 'byzantine': expected a list of strategy names")
        rules = data.get("link_faults_file", "")
        if not isinstance(rules, str):
            raise AdversaryError(f"{where}: field 'link_faults_file': expected a path string")
        return cls(tuple(byz), rules).checked(where)

    def to_json(self) -> dict[str, Any]:
        return {"byzantine": list(self.byzantine), "link_faults_file": self.link_faults_file}

    def checked(self, where: str) -> Adversary:
        """Self, once every strategy spec parses (AdversaryError names the bad one)."""
        for spec in self.byzantine:
            try:
                parse_strategy(spec)
            except ValueError as exc:
                raise AdversaryError(f"{where}: byzantine {spec!r}: {exc}") from None
        return self


def adversary_path(home: str | os.PathLike) -> Path:
    return Path(home) / ADVERSARY_FILE


def read_adversary(home: str | os.PathLike) -> Adversary:
    """The node's adversary file (none: an honest node without link faults)."""
    p = adversary_path(home)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return Adversary()
    except (OSError, ValueError) as exc:
        raise AdversaryError(f"{p}: cannot read: {exc}") from exc
    return Adversary.from_json(data, str(p))


def write_adversary(home: str | os.PathLike, adversary: Adversary) -> Path:
    """Atomically write the node's adversary file (read at the node's next start)."""
    p = adversary_path(home)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(adversary.to_json()) + "\n")
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------- build_node's seams


def byzantine_factory(strategies: Sequence[str]) -> Callable[..., Any]:
    """`replica_factory` for build_node: the honest `consensus.Replica`, wrapped in a
    `ByzantineReplica` running fresh instances of `strategies` (specs, validated here)."""
    specs = tuple(strategies)
    for spec in specs:
        parse_strategy(spec)

    def factory(config: Any, index: int, auth: Any, restored: Any) -> Any:
        from consensus import Replica

        return ByzantineReplica(Replica(config, index, auth, restored),
                                [parse_strategy(s) for s in specs], auth,
                                replica_id=index, config=config)

    return factory


def link_faults_wrapper(rules_file: str | os.PathLike) -> Callable[[Any], Any]:
    """`wrap_transport` for build_node: link faults from `rules_file`, re-read while running."""
    from .link_faults import FaultyTransport

    return lambda transport: FaultyTransport(transport, rules_file=rules_file)


def node_factory(adversary: Adversary) -> Callable[[Any], Any]:
    """`node_factory(config) -> Node` for `bftnode.cli.run_start`."""

    def build(config: Any) -> Any:
        from bftnode.node.build import build_node

        from .clock import CLOCK_OFFSET_FILE, SkewedClock

        node = build_node(
            config,
            replica_factory=byzantine_factory(adversary.byzantine) if adversary.byzantine
            else None,
            wrap_transport=link_faults_wrapper(config.path(adversary.link_faults_file))
            if adversary.link_faults_file else None,
            clock_ms=SkewedClock(config.path(CLOCK_OFFSET_FILE)),
        )
        for spec in adversary.byzantine:
            strategy = parse_strategy(spec)
            if isinstance(strategy, LyingReadsStrategy):
                LyingReads(node, config.home, strategy.percent, seed=config.node_index)
        return node

    return build


# ---------------------------------------------------------------- the command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument("--byzantine", action="append", default=[], metavar="STRATEGY[,…]",
                   help="run this strategy (repeatable; after those of HOME/adversary.json), "
                        "e.g. silent or crash-after:5")
    p.add_argument("--link-faults", metavar="FILE",
                   help="link rules file, re-read while running (default: HOME/adversary.json's)")


def adversary_of(args: argparse.Namespace) -> Adversary:
    """HOME/adversary.json plus the command-line flags; AdversaryError if invalid."""
    adv = read_adversary(args.home)
    extra = tuple(s.strip() for spec in args.byzantine for s in spec.split(",") if s.strip())
    rules = adv.link_faults_file if args.link_faults is None else str(
        Path(args.link_faults).resolve())
    return Adversary(adv.byzantine + extra, rules).checked("--byzantine")


def run(args: argparse.Namespace) -> int:
    from bftnode.cli import EXIT_USAGE, run_start

    try:
        adversary = adversary_of(args)
    except AdversaryError as exc:
        print(f"testnet node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_start(args, node_factory=node_factory(adversary))
