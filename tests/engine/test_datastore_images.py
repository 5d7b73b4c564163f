"""Datastore images built from the distro archive, started the way Trove
26.x's container managers start them (trove/guestagent/utils/docker.py and
the datastores' service.py): user 1001:1001, the same bind mounts, env,
command and healthcheck. Each must become healthy and answer a query with
the password it was given.

The images are the product (same key as a user's build), so they stay in the
store; only the test's containers and folders go."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from factory.build import build_image
from factory.containers import distro_plan
from factory.store.cache import CacheSettings, RemoteCache
from factory.target import Target

pytestmark = [pytest.mark.engine, pytest.mark.slow]
SECOND = 1_000_000_000  # Docker's healthcheck durations are nanoseconds
PASSWORD = "s3cret-'quote"
# Trove's HEALTHCHECK of each manager (interval shortened for the test).
HEALTH = {
    "postgresql": ["CMD", "pg_isready", "-U", "postgres"],
    "mariadb": ["CMD", "healthcheck.sh", "--defaults-file", "/var/lib/mysql/data/.my-healthcheck.cnf",
                "--connect", "--innodb_initialized"],
}


def _image(datastore: str) -> str:
    plan = distro_plan(Target(distro="debian", release="bookworm", datastore=datastore), datastore)
    build_image(plan, refresh=False, cache=RemoteCache(CacheSettings()))
    return plan.recipe.ref


def _folders(root: Path, names: list[str]) -> dict[str, Path]:
    """Host folders owned by the database user, as the agent makes them."""
    out = {}
    for name in names:
        (root / name).mkdir(parents=True)
        out[name] = root / name
    for path in [root, *root.rglob("*")]:
        os.chown(path, 1001, 1001)
    return out


def _start(engine, image: str, datastore: str, command: str, binds: dict[Path, str], environment: dict,
           privileged: bool = False):
    """As docker.py's _create_container_with_low_level_api: low-level create, binds, user, healthcheck."""
    api = engine.api
    host_config = api.create_host_config(binds={str(k): {"bind": v, "mode": "rw"} for k, v in binds.items()},
                                         privileged=privileged, restart_policy={"Name": "unless-stopped"})
    container = api.create_container(
        image, name=f"factory-test-{datastore}-{int(time.time())}", host_config=host_config, user="1001:1001",
        environment=environment, command=command, detach=True,
        healthcheck={"test": HEALTH[datastore], "start_period": 10 * SECOND, "interval": 2 * SECOND,
                     "timeout": 5 * SECOND, "retries": 3})
    api.start(container["Id"])
    return engine.containers.get(container["Id"])


def _healthy(container, seconds: int = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        container.reload()
        health = container.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy":
            return time.monotonic() - started
        if container.status == "exited":
            break
        time.sleep(1)
    logs = container.logs().decode(errors="replace")[-2000:]
    raise AssertionError(f"{container.name} not healthy ({container.status}); logs:\n{logs}")


def _query(container, cmd: list[str]) -> str:
    code, out = container.exec_run(cmd)
    assert code == 0, out.decode(errors="replace")
    return out.decode().strip()


def test_postgresql_image_runs_as_trove_starts_it(engine, tmp_path):
    image = _image("postgresql")
    assert image == "postgres:15"  # bookworm's archive ships PostgreSQL 15
    f = _folders(tmp_path, ["etc", "socket", "lib/data"])
    (f["etc"] / "postgresql.conf").write_text(
        "listen_addresses = '*'\nhba_file = '/etc/postgresql/pg_hba.conf'\n"
        "lc_messages = 'en_US.UTF-8'\nlc_monetary = 'en_US.UTF-8'\nlc_numeric = 'en_US.UTF-8'\nlc_time = 'en_US.UTF-8'\n")
    (f["etc"] / "pg_hba.conf").write_text("local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n")
    container = _start(engine, image, "postgresql", "postgres -c config_file=/etc/postgresql/postgresql.conf", {
        f["etc"]: "/etc/postgresql", f["socket"]: "/var/run/postgresql",
        tmp_path / "lib": "/var/lib/postgresql", f["lib/data"]: "/var/lib/postgresql/data",
    }, {"POSTGRES_PASSWORD": PASSWORD, "PGDATA": "/var/lib/postgresql/data/pgdata"})
    try:
        _healthy(container)
        # Over TCP with the password: the superuser got POSTGRES_PASSWORD.
        out = _query(container, ["env", f"PGPASSWORD={PASSWORD}", "psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc",
                                 "SELECT current_user || ' ' || current_setting('server_version_num')::int / 10000"])
        assert out == "postgres 15"
        assert (f["lib/data"] / "pgdata" / "PG_VERSION").stat().st_uid == 1001
        assert (f["socket"] / ".s.PGSQL.5432").exists()  # the socket the agent's host side uses
    finally:
        container.remove(force=True)


def test_mariadb_image_runs_as_trove_starts_it(engine, tmp_path):
    image = _image("mariadb")
    assert image == "mariadb:10.11"
    f = _folders(tmp_path, ["etc", "socket", "lib"])
    (f["etc"] / "my.cnf").write_text("[client-server]\nsocket = /var/run/mysqld/mysqld.sock\n"
                                     "[mysqld]\nbind-address = 0.0.0.0\ndatadir = /var/lib/mysql/data\n")
    container = _start(engine, image, "mariadb", "--skip-slave-start=ON --datadir=/var/lib/mysql/data", {
        f["etc"]: "/etc/mysql", f["socket"]: "/var/run/mysqld", f["lib"]: "/var/lib/mysql",
    }, {"MYSQL_ROOT_PASSWORD": PASSWORD, "MYSQL_INITDB_SKIP_TZINFO": 1, "MARIADB_AUTO_UPGRADE": 1}, privileged=True)
    try:
        _healthy(container)
        out = _query(container, ["mariadb", "-uroot", f"-p{PASSWORD}", "-h127.0.0.1", "-N", "-e", "SELECT 40 + 2"])
        assert out == "42"
        assert (f["lib"] / "data" / ".my-healthcheck.cnf").is_file()
        # A restored data directory has no healthcheck credentials; with
        # MARIADB_AUTO_UPGRADE (Trove sets it for that) the entrypoint makes them anew.
        (f["lib"] / "data" / ".my-healthcheck.cnf").unlink()
        container.restart()
        _healthy(container)
        assert (f["lib"] / "data" / ".my-healthcheck.cnf").is_file()
    finally:
        container.remove(force=True)


def test_no_password_is_one_clear_line(engine, tmp_path):
    container = engine.containers.run(_image("postgresql"), detach=True, user="1001:1001",
                                      environment={"PGDATA": "/tmp/pgdata"})
    try:
        assert container.wait(timeout=60)["StatusCode"] == 1
        assert "POSTGRES_PASSWORD is not set" in container.logs().decode()
    finally:
        container.remove(force=True)


def test_without_a_registry_the_default_is_the_distro_image_with_one_warning(engine, builder):
    from factory.engine.docker import registry_answers
    from tests.conftest import factory

    if registry_answers("postgres:16"):
        pytest.skip("a registry answers here: the default is the upstream image")
    run = factory("plan", "--distro", "debian", "--datastore", "postgresql", "--as", "json")
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [e for e in run.events() if e.get("level") == "warning"]
    assert len(warnings) == 1 and "building postgres:15 from the debian bookworm archive" in warnings[0]["event"]
