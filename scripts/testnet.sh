#!/usr/bin/env bash
# Builds .venv from nothing if needed (same as scripts/test.sh), then starts a local 4-node
# testnet in ./testnet-data with a live status table (Ctrl-C stops the nodes).
# Extra arguments go to `python -m testnet up`, e.g. ./scripts/testnet.sh --byzantine 3:silent
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
.venv/bin/python -m pip install -q -e '.[test,dev]' >>.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
exec .venv/bin/python -m testnet up --nodes 4 --dir ./testnet-data "$@"
