#!/usr/bin/env bash
# Builds .venv from nothing if needed, then runs lint and the whole test suite (about 15 min).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
.venv/bin/python -m pip install -q -e '.[test,dev]' >>.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
.venv/bin/ruff check .
# The default suite (unit, property, simulation, storage, real libp2p and real processes), then
# the slow soak suite: every attack scenario on real testnets, the 2,000-seed simulator sweep,
# the 60-s lock contention run. `./scripts/test.sh -m 'not slow'` style arguments go to both.
.venv/bin/python -m pytest -q -p no:randomly "$@"
.venv/bin/python -m pytest -q -p no:randomly -m slow "$@"
