#!/bin/sh
# Runs in the new root (mmdebstrap's customize hook) with VERSION set.
set -eu
# The server checks the version it was built for: a wrong versions: entry in
# the recipe fails here, not in a guest.
server=$(command -v mariadbd || command -v mysqld)
"$server" --version | grep -q " $VERSION\." || { echo "error: $("$server" --version) is not $VERSION" >&2; exit 1; }
# The data directory Debian's postinst made is not used: Trove mounts its
# volume at /var/lib/mysql and the entrypoint initialises it.
rm -rf /var/lib/mysql/*
# Trove runs the server as 1001:1001 (the guest's database user).
groupadd --system --gid 1001 database
useradd --system --uid 1001 --gid 1001 --home-dir /var/lib/mysql --no-create-home --shell /bin/false database
install -d -o mysql -g mysql -m 0777 /var/run/mysqld /var/lib/mysql
