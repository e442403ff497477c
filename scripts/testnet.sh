#!/usr/bin/env bash
# Builds .venv from nothing if needed, then starts a local 4-node testnet in ./testnet-data with
# a live status table (Ctrl-C stops the nodes). Extra arguments go to `python -m testnet up`,
# e.g. ./scripts/testnet.sh --byzantine 3:silent   or   ./scripts/testnet.sh --detach
# A new testnet writes ./testnet-data/admin.key, the admin of its permission checks (the README
# tour grants your client key a role with it); --open (dev only) starts without checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m testnet up --nodes 4 --dir ./testnet-data --authenticated-state "$@"
