#!/usr/bin/env bash
# Builds .venv from nothing if needed, then runs lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
.venv/bin/python -m pip install -q -e '.[test,dev]' >>.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:randomly "$@"
