#!/bin/bash
# The official mysql/mariadb images' contract, for an image built from the
# distro archive: bare flags go to the server; an empty data directory is
# initialised with the root password from MARIADB_ROOT_PASSWORD or
# MYSQL_ROOT_PASSWORD (root@localhost and root@MARIADB_ROOT_HOST), an optional
# database and user, and for MariaDB a healthcheck user whose credentials go
# to <datadir>/.my-healthcheck.cnf for healthcheck.sh. Run as root, the server
# drops to the mysql user.
set -Eeuo pipefail

server=$(command -v mariadbd || command -v mysqld)
if [ "${1:0:1}" = '-' ]; then
    set -- "$server" "$@"
fi
case "$(basename "$1")" in
    mariadbd|mysqld) ;;
    *) exec "$@" ;;
esac
for arg; do
    case "$arg" in -'?'|--help|--print-defaults|-V|--version) exec "$@" ;; esac
done

# MARIADB_X wins over MYSQL_X, as in the official MariaDB image.
env_of() { local m="MARIADB_$1" y="MYSQL_$1"; printf '%s' "${!m:-${!y:-${2:-}}}"; }
# The server's settings as its options and config files make them.
settings=$("$@" --verbose --help 2> /dev/null)
# The table of values comes last (a wrapped description line may start with
# an option's name too).
option() { awk -v k="$1" '$1 == k && NF == 2 { v = $2 } END { print v }' <<< "$settings"; }
datadir=$(option datadir) socket=$(option socket) port=$(option port)
datadir=${datadir%/}

if [ "$(id -u)" = 0 ]; then
    install -d -o mysql -g mysql "$datadir" "$(dirname "$socket")"
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$BASH_SOURCE" "$@"
fi

mariadb=0
[ -x "$(command -v mariadb-install-db)" ] && mariadb=1
client=$(command -v mariadb || command -v mysql)
tmp_socket=$(mktemp -u /tmp/init-XXXXXX.sock)
sql() { "$client" --protocol=socket --socket="$tmp_socket" -uroot --database=mysql "$@"; }
quote() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\\\'}"; }

temp_server() {
    "$@" --skip-networking --socket="$tmp_socket" --skip-log-bin --default-time-zone=SYSTEM &
    temp_pid=$!
    for _ in $(seq 60); do
        sql -e 'SELECT 1' > /dev/null 2>&1 && return 0
        kill -0 "$temp_pid" 2> /dev/null || { echo "error: the server did not start" >&2; exit 1; }
        sleep 1
    done
    echo "error: the server did not answer within 60 s" >&2
    exit 1
}

stop_temp_server() {
    kill "$temp_pid"
    wait "$temp_pid" || true
}

# Made here: healthcheck_sql runs in a pipeline's subshell.
hc_password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
healthcheck_sql() {
    [ "$mariadb" = 1 ] || return 0
    for host in 127.0.0.1 ::1 localhost; do
        echo "CREATE USER IF NOT EXISTS healthcheck@'$host' IDENTIFIED BY '$hc_password';"
        echo "ALTER USER healthcheck@'$host' IDENTIFIED BY '$hc_password';"
        echo "GRANT USAGE ON *.* TO healthcheck@'$host';"
    done
}

write_healthcheck_cnf() {
    [ "$mariadb" = 1 ] || return 0
    umask 077
    printf '[mariadb-client]\nport=%s\nsocket=%s\nuser=healthcheck\npassword=%s\n' \
        "${port:-3306}" "$socket" "$hc_password" > "$datadir/.my-healthcheck.cnf"
}

if [ ! -d "$datadir/mysql" ]; then
    root_password=$(env_of ROOT_PASSWORD)
    if [ -z "$root_password" ] && [ -z "$(env_of ALLOW_EMPTY_ROOT_PASSWORD)" ]; then
        echo "error: the database is uninitialized and no root password is set" >&2
        echo "       set MARIADB_ROOT_PASSWORD or MYSQL_ROOT_PASSWORD (or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1)" >&2
        exit 1
    fi
    mkdir -p "$datadir"
    echo "Initializing the database in $datadir"
    if [ "$mariadb" = 1 ]; then
        mariadb-install-db --datadir="$datadir" --rpm --auth-root-authentication-method=normal \
            --skip-test-db --skip-log-bin --default-time-zone=SYSTEM > /dev/null
    else
        "$@" --initialize-insecure --default-time-zone=SYSTEM
    fi
    temp_server "$@"
    if [ -z "$(env_of INITDB_SKIP_TZINFO)" ]; then
        tzsql=$(command -v mariadb-tzinfo-to-sql || command -v mysql_tzinfo_to_sql)
        "$tzsql" /usr/share/zoneinfo 2> /dev/null | sql
    fi
    root_host=$(env_of ROOT_HOST %)
    db=$(env_of DATABASE) user=$(env_of USER) password=$(env_of PASSWORD)
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        if [ "$mariadb" = 1 ]; then
            # mariadb-install-db's other root accounts have no password.
            echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
            echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
        fi
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(quote "$root_password");"
        if [ "$root_host" != localhost ]; then
            echo "CREATE USER 'root'@$(quote "$root_host") IDENTIFIED BY $(quote "$root_password");"
            echo "GRANT ALL ON *.* TO 'root'@$(quote "$root_host") WITH GRANT OPTION;"
        fi
        healthcheck_sql
        [ -z "$db" ] || echo "CREATE DATABASE IF NOT EXISTS \`$db\`;"
        if [ -n "$user" ] && [ -n "$password" ]; then
            echo "CREATE USER $(quote "$user")@'%' IDENTIFIED BY $(quote "$password");"
            [ -z "$db" ] || echo "GRANT ALL ON \`$db\`.* TO $(quote "$user")@'%';"
        fi
        echo "FLUSH PRIVILEGES;"
    } | sql
    write_healthcheck_cnf
    stop_temp_server
    echo "Database init process complete; ready for start up."
elif [ "$mariadb" = 1 ] && [ -n "$(env_of AUTO_UPGRADE)" ] && [ ! -s "$datadir/.my-healthcheck.cnf" ]; then
    # A restored data directory brings no healthcheck credentials: make them
    # anew, with grants skipped (the root password may have changed too).
    temp_server "$@" --skip-grant-tables
    { echo "FLUSH PRIVILEGES;"; healthcheck_sql; } | sql
    write_healthcheck_cnf
    stop_temp_server
fi

exec "$@"
