#!/usr/bin/env bash
# Set up (once) and run the service on embedded defaults: SQLite prediction log, local MLflow
# store and artifacts under ./var, a demo model trained on first run. http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/future-skills bootstrap
exec .venv/bin/future-skills serve "$@"
