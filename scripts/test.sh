#!/usr/bin/env bash
# Builds .venv from nothing if needed, then runs lint and the whole test suite: the default
# suite (unit, property, simulation, storage, real libp2p, real processes), then the slow soak
# suite (every attack scenario on real testnets, 1,800 more simulator seeds, the 60-s lock
# contention run). About 20 minutes on 2 cores (6 + 14); each run lists its slowest tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:randomly --durations=15 "$@"
.venv/bin/python -m pytest -q -p no:randomly -m slow --durations=15 "$@"
