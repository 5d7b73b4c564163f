#!/usr/bin/env bash
# The factory's test suite, from a fresh Debian 12 machine: installs and starts
# what it needs (scripts/setup-host.sh), then runs pytest. Extra arguments go
# to pytest, e.g. ./test.sh -m "not slow".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/scripts/setup-host.sh" --test
cd "$here"
exec "$here/.venv/bin/python" -m pytest -ra "$@"
