#!/bin/sh
# Runs in the new root (mmdebstrap's customize hook) with VERSION set.
set -eu
# The cluster Debian's postinst made is not used: the entrypoint makes one in
# PGDATA, which Trove mounts from the data volume.
rm -rf "/etc/postgresql/$VERSION" "/var/lib/postgresql/$VERSION"
# Trove's config template sets lc_* to en_US.UTF-8.
localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
# Trove runs the server as 1001:1001 (the guest's database user); initdb
# refuses a uid without a passwd entry.
groupadd --system --gid 1001 database
useradd --system --uid 1001 --gid 1001 --home-dir /var/lib/postgresql --no-create-home --shell /bin/bash database
install -d -o postgres -g postgres -m 2777 /var/run/postgresql
install -d -o postgres -g postgres -m 0777 /var/lib/postgresql/data
