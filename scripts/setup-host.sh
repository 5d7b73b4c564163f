#!/usr/bin/env bash
# Prepare this Debian host for the factory, idempotently: system packages, a
# running container engine, and the virtualenv with the factory installed.
# A second run finds everything in place and changes nothing.
#   scripts/setup-host.sh [--test]     (--test also installs the test extra)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages the host needs. With --test, also the servers the tests
#    run for real: Swift with s3api (S3/Swift publish, layer cache), Glance,
#    and an OCI registry (layer cache).
packages=(docker.io mmdebstrap debootstrap qemu-utils qemu-system-x86 genisoimage python3 python3-venv rabbitmq-server socat
          ca-certificates e2fsprogs dosfstools util-linux openssh-client)
test_packages=(swift swift-proxy swift-object swift-container swift-account memcached glance-api docker-registry gdisk)
[ -n "$extra" ] && packages+=("${test_packages[@]}")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # Server packages start their daemons from postinst, listening on every
    # interface. A policy-rc.d that answers 101 forbids that; the tests start
    # the servers themselves on 127.0.0.1. Ours is removed again afterwards.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        own_policy=1
    fi
    as_root apt-get update -q >/dev/null
    status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ -n "$own_policy" ] && as_root rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || exit "$status"
    # Should a daemon have started all the same, stop it through its own init
    # script (which goes by its pid file, so the tests' servers are left alone).
    # rabbitmq-server's postinst starts Erlang's port mapper (epmd, on every
    # interface) despite the policy; verify runs its own on 127.0.0.1.
    if [[ " ${missing[*]} " == *" rabbitmq-server "* ]] && command -v epmd >/dev/null; then
        epmd -kill >/dev/null 2>&1 || true
    fi
    for script in /etc/init.d/rabbitmq-server /etc/init.d/memcached /etc/init.d/glance-api /etc/init.d/docker-registry /etc/init.d/swift-*; do
        [ -x "$script" ] && "$script" status >/dev/null 2>&1 && as_root "$script" stop >/dev/null 2>&1 || true
    done
fi

# 2. A container engine that answers. Use the host's if one runs; otherwise
#    start dockerd and wait for it.
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=$(command -v docker)
if ! "$docker_cli" info >/dev/null 2>&1; then
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
        say "starting docker.service"
        as_root systemctl start docker
    else
        say "starting dockerd (log: /var/log/factory-dockerd.log)"
        # Outlives this script: it must not hold the caller's other open
        # files (a lock, a pipe), or whoever waits on them waits forever.
        as_root bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null; done
                         nohup setsid dockerd </dev/null >/var/log/factory-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 60); do
        "$docker_cli" info >/dev/null 2>&1 && break
        sleep 1
    done
    "$docker_cli" info >/dev/null 2>&1 || { say "dockerd did not answer within 60 s; see /var/log/factory-dockerd.log"; exit 1; }
fi

# 3. The virtualenv, reinstalled only when pyproject.toml (or the extra) changed.
python=python3
[ -x /usr/bin/python3 ] && ! command -v python3 >/dev/null && python=/usr/bin/python3
stamp="$venv/.factory-installed"
want="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)$extra"
if [ ! -x "$venv/bin/factory" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the factory into $venv"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    log="$venv/pip-install.log"
    if ! { "$venv/bin/pip" install -q --upgrade pip && "$venv/bin/pip" install -e "$here$extra"; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        say "pip install failed; full log: $log"
        exit 1
    fi
    echo "$want" > "$stamp"
fi

# 4. With --test: gitlab-ci-local (npm; 4.65 is the last that runs on Debian 12's
#    Node 20), which runs the pipeline `factory plan --emit gitlab` makes
#    (tests/engine/test_ci.py). `act` for the GitHub workflow is in the test extra.
tools="$here/.tools"
gitlab_ci_local=4.65.1
if [ -n "$extra" ] && [ "$("$tools/node_modules/.bin/gitlab-ci-local" --version 2>/dev/null)" != "$gitlab_ci_local" ]; then
    command -v npm >/dev/null || { say "installing npm"; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >/dev/null; }
    say "installing gitlab-ci-local $gitlab_ci_local into $tools"
    npm install --silent --prefix "$tools" "gitlab-ci-local@$gitlab_ci_local" >/dev/null
fi
