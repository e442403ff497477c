"""Split a py-spy raw profile of a node by layer (docs/performance.md, "Throughput"):
`python -m testnet.profile_layers OUT.txt [OUT2.txt ...] [--json]`, where each file is
`py-spy record -p PID -f raw --gil ...` output. Each sample goes to the layer of its innermost
frame that matches a rule (LAYERS, first match from the leaf up); the answer is each layer's
share of the samples.
Imports: stdlib only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable

LAYERS: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(rx)) for name, rx in (
    ("signature verification", r"nacl/|crypto_sign|verify_cache\.py|signing\.py"),
    ("Merkle tree", r"storage/merkle_"),
    ("LevelDB", r"storage/leveldb\.py|plyvel"),
    ("encoding (msgspec, codec)", r"consensus/codec\.py|msgspec|bftnode/app/ops\.py|msgpack_shape"),
    ("execution (app)", r"bftnode/app/"),
    ("storage, ledger code", r"storage/"),
    ("libp2p (Noise, Yamux, framing)", r"libp2p/|network/|noise|yamux|multiselect"),
    ("RPC ingestion", r"bftnode/rpc/|hypercorn|starlette|h11|httpx|anyio"),
    ("consensus stepping", r"consensus/"),
    ("node shell", r"bftnode/node/"),
    ("trio scheduler, threads", r"trio/|threading\.py|_thread_cache"),
)]


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, rx in LAYERS:
            if rx.search(frame):
                return name
    return "other"


def split(lines: Iterable[str]) -> tuple[dict[str, float], int]:
    """(layer -> share of the samples in %, samples) of one raw profile."""
    counts: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        counts[layer_of(stack.split(";"))] += int(n)
    return {k: round(100 * v / total, 1) for k, v in counts.most_common()} if total else {}, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testnet.profile_layers", description=__doc__)
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = {}
    for f in args.files:
        with open(f) as fh:
            shares, total = split(fh)
        out[f] = {"samples": total, "layers": shares}
    if args.json:
        print(json.dumps(out))
    else:
        for f, r in out.items():
            print(f"{f}: {r['samples']} samples")
            for name, pct in r["layers"].items():
                print(f"  {pct:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
