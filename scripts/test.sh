#!/usr/bin/env bash
# Set up (once) and run the test suite. Needs Postgres at 127.0.0.1:5432 (user postgres, trust),
# or FS_TEST_PG_DSN pointing at another server's maintenance database.
# Some tests run Debian programs (Prometheus, its promtool, HAProxy); missing ones are installed with
# apt-get when running as root, else the exact command is printed and the script fails here.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

# command:Debian package, for every program a test runs that pip does not provide.
DEBIAN_TOOLS="prometheus:prometheus promtool:prometheus haproxy:haproxy chromium:chromium"
# haproxy lives in /usr/sbin, which a non-root user's PATH may lack (the tests look there too).
PATH="$PATH:/usr/sbin:/sbin"
missing=""
for pair in $DEBIAN_TOOLS; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || case " $missing " in
    *" ${pair#*:} "*) ;;
    *) missing="$missing ${pair#*:}" ;;
  esac
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages the tests need:$missing" >&2
    # shellcheck disable=SC2086  # one word per package
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q --no-install-recommends $missing; }; then
      echo "apt-get could not install:$missing (no package mirror?); install them, then rerun" >&2
      exit 1
    fi
  else
    echo "the tests need Debian packages that are not installed; run:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
# Lint and types first (configured in pyproject.toml): a finding fails the run like a test.
.venv/bin/ruff check app tests bench alembic
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
