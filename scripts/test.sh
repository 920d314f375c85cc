#!/usr/bin/env bash
# Set up (once) and run the test suite. Needs Postgres at 127.0.0.1:5432 (user postgres, trust),
# or FS_TEST_PG_DSN pointing at another server's maintenance database.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
exec .venv/bin/python -m pytest "$@"
