#!/bin/bash
# The checks of the official MariaDB image's healthcheck.sh that Trove uses:
#   healthcheck.sh [--defaults-file FILE] [--connect] [--innodb_initialized]
# Exit 0 when every check given passes.
set -eu
defaults=() checks=()
while [ $# -gt 0 ]; do
    case "$1" in
        --defaults-file) defaults=(--defaults-file="$2"); shift ;;
        --defaults-file=*) defaults=("$1") ;;
        --connect|--innodb_initialized) checks+=("${1#--}") ;;
        *) echo "healthcheck.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
client=$(command -v mariadb || command -v mysql)
query() { "$client" "${defaults[@]}" --skip-column-names --batch -e "$1"; }
for check in "${checks[@]}"; do
    case "$check" in
        connect) query 'SELECT 1' > /dev/null ;;
        innodb_initialized)
            [ "$(query "SELECT 1 FROM information_schema.ENGINES WHERE engine = 'InnoDB' AND support IN ('YES', 'DEFAULT', 'ENABLED')")" = 1 ] ;;
    esac
done
