# Sourced by scripts/test.sh and scripts/testnet.sh: build .venv from nothing if needed and
# install the project (quietly; the log is .venv/pip.log and is printed on failure).
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
.venv/bin/python -m pip install -q -e '.[test,dev]' >>.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
