"""What the fuzz scripts share: `--make-corpus DIR` writes a target's seed inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def make_corpus(argv: list[str], seeds: Callable[[], list[bytes]]) -> bool:
    """With `--make-corpus DIR` in argv: write seeds() as DIR/seed-NN and return True."""
    if "--make-corpus" not in argv:
        return False
    out = Path(argv[argv.index("--make-corpus") + 1])
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds()):
        (out / f"seed-{i:02d}").write_bytes(s)
    return True
