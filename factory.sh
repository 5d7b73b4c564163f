#!/usr/bin/env bash
# Run the factory on this host, setting it up first if needed:
#   ./factory.sh build --distro debian --datastore postgresql
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/scripts/setup-host.sh"
exec "$here/.venv/bin/factory" "$@"
