"""DATASTORE_PKG_LOCATION: a package the user brings is installed in the
datastore layer, and only its bytes (not its path or mtime) enter the key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from factory.engine.docker import run_output

from tests.conftest import NATIVE_AGENT, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "redis", *NATIVE_AGENT]


def make_deb(root: Path, version: str) -> Path:
    pkg = root / f"pkg-{version}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/factory-test-db").mkdir(parents=True)
    (pkg / "usr/share/factory-test-db/VERSION").write_text(version + "\n")
    (pkg / "DEBIAN/control").write_text(
        f"Package: factory-test-db\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: factory tests <tests@factory.invalid>\nDescription: a licensed database, for tests\n"
    )
    deb = root / f"new_db-{version}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], check=True, capture_output=True)
    return deb


def keys(env_value: str) -> dict[str, str]:
    run = factory("plan", "--as", "json", *TARGET, "--env", f"DATASTORE_PKG_LOCATION={env_value}")
    assert run.returncode == 0, run.stderr
    return {l["layer"]: l["key"] for l in json.loads(run.stdout)[0]["layers"]}


def test_package_from_datastore_pkg_location_is_installed(engine, builder, tmp_path):
    deb = make_deb(tmp_path, "1.0")
    run = factory("build", *TARGET, "--format", "tar", "--output", str(tmp_path / "out"),
                  "--env", f"DATASTORE_PKG_LOCATION={deb}")
    assert run.returncode == 0, run.stderr[-3000:]
    image = f"factory-layer:{keys(str(deb))['datastore']}"
    out = run_output(image, ["dpkg-query", "-W", "-f", "${Version}", "factory-test-db"])
    assert out.decode() == "1.0"


def test_only_the_bytes_of_the_package_change_the_key(tmp_path):
    one = make_deb(tmp_path, "1.0")
    before = keys(str(one))
    os.utime(one, (1, 1))
    assert keys(str(one)) == before
    copy = tmp_path / "elsewhere.deb"
    copy.write_bytes(one.read_bytes())
    assert keys(str(copy))["datastore"] == before["datastore"]
    two = make_deb(tmp_path, "2.0")
    after = keys(str(two))
    assert after["base"] == before["base"] and after["guest"] == before["guest"]
    assert after["datastore"] != before["datastore"]
