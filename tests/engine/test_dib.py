"""`factory dib`: the seed's trovestack block, its exported variables and its
disk-image-create command line unchanged, built as cached layers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from factory.engine.docker import run_output

from tests.conftest import FACTORY, Run

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ELEMENTS = ["vm", "cloud-init-datasources", "ubuntu-guest"]


def seed_environment(tmp: Path) -> dict[str, str]:
    """The seed's exports, with the values a trovestack controller has."""
    (tmp / "trove" / "integration" / "scripts" / "files" / "elements").mkdir(parents=True)
    (tmp / "ssh").mkdir()
    (tmp / "tripleo" / "elements").mkdir(parents=True)
    scripts = tmp / "trove" / "integration" / "scripts"
    import diskimage_builder

    dib_dir = Path(diskimage_builder.__file__).parent
    return {
        "DIB_RELEASE": "focal", "FACTORY_AGENT_SOURCE": "pypi:13.0.1",
        "HOST_USERNAME": "stack", "HOST_SCP_USERNAME": "stack", "GUEST_USERNAME": "dbagent",
        "CONTROLLER_IP": "10.0.0.1", "TROVESTACK_SCRIPTS": str(scripts), "SERVICE_TYPE": "mysql",
        "PATH_TROVE": str(tmp / "trove"), "SSH_DIR": str(tmp / "ssh"), "GUEST_LOGDIR": "/var/log/dbagent",
        "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive", "DATASTORE_PKG_LOCATION": "", "BRANCH_OVERRIDE": "stable/ussuri",
        "ELEMENTS_PATH": f"{scripts}/files/elements:{dib_dir}/elements:{tmp}/tripleo/elements",
        "DIB_APT_CONF_DIR": "/etc/apt/apt.conf.d", "DIB_CLOUD_INIT_ETC_HOSTS": "true",
    }


def new_db_deb(root: Path) -> Path:
    """A stand-in for a licensed database's package: the percona element
    enables mysql.service, so the package brings that unit."""
    pkg = root / "new_db"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "lib/systemd/system").mkdir(parents=True)
    (pkg / "lib/systemd/system/mysql.service").write_text(
        "[Unit]\nDescription=stand-in database\n[Service]\nExecStart=/bin/sleep infinity\n")
    (pkg / "DEBIAN/control").write_text(
        "Package: factory-test-db\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: factory tests <tests@factory.invalid>\nDescription: a licensed database, for tests\n")
    deb = root / "new_db.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], check=True, capture_output=True)
    return deb


_MADE: list[Path] = []


@pytest.fixture(autouse=True)
def remove_keyed_artifacts():
    """The keyed artifacts `factory dib` keeps in the state folder (layers stay: they are shared)."""
    yield
    for manifest in _MADE:
        for path in manifest.parent.glob(manifest.name.replace(".manifest.json", ".*")):
            path.unlink(missing_ok=True)
    _MADE.clear()


def dib(*args: str, env: dict[str, str], cwd: Path, timeout: int = 5400) -> Run:
    p = subprocess.run([FACTORY, "--log-format", "json", "dib", *args], capture_output=True, text=True,
                       env={**os.environ, **env}, cwd=cwd, timeout=timeout)
    run = Run(p.returncode, p.stdout, p.stderr)
    _MADE.extend(Path(e["manifest"]) for e in run.events() if e.get("event") == "artifact ready")
    return run


def test_the_seed_block_builds_an_image_that_carries_its_exports_and_then_comes_from_the_cache(engine, builder, tmp_path):
    env = seed_environment(tmp_path)
    args = ["-a", "amd64", "-o", "trove-mysql", "-x", "--qemu-img-options", "compat=1.1", "ubuntu", *ELEMENTS, "ubuntu-mysql"]
    first = dib(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Image file trove-mysql.qcow2 created..." in first.stdout
    assert first.stdout.rstrip().endswith("Build completed successfully")
    warned = [e["event"] for e in first.events() if e.get("level") == "warning"]
    assert any("DIB_APT_CONF_DIR, TROVESTACK_SCRIPTS" in w for w in warned)
    man = json.loads((tmp_path / "trove-mysql.manifest.json").read_text())
    assert man["images"]["qcow2"]["file"] == "trove-mysql.qcow2"
    assert (tmp_path / "trove-mysql.qcow2.sha256").read_text().endswith("  trove-mysql.qcow2\n")
    assert dict(man["target"]["env"])["GUEST_USERNAME"] == "dbagent"

    # The exported values are in the image: the agent's unit runs as the
    # exported GUEST_USERNAME and logs to the exported GUEST_LOGDIR, which it
    # owns. (Booting it is verify's job, tested on other images; CI time.)
    guest = next(l["key"] for l in man["layers"] if l["layer"] == "guest")
    seen = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", f"factory-layer:{guest}", "-c",
                           "grep -E '^(User=|ExecStart=)' /etc/systemd/system/trove-guest.service; "
                           "stat -c %U /var/log/dbagent"], capture_output=True, text=True)
    assert "User=dbagent" in seen.stdout and "--log-dir=/var/log/dbagent" in seen.stdout, seen.stdout + seen.stderr
    assert seen.stdout.strip().endswith("dbagent")

    again = dib(*args, env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(again.layer_states().values()) == {"cached"}


def test_datastore_pkg_location_is_installed_and_a_missing_one_fails_before_any_layer(engine, builder, tmp_path):
    env = seed_environment(tmp_path)
    args = ["-a", "amd64", "-o", "percona", "-t", "tar", "ubuntu", *ELEMENTS, "ubuntu-percona"]
    missing = dib(*args, env={**env, "SERVICE_TYPE": "percona", "DATASTORE_PKG_LOCATION": "/nonexistent.deb"},
                  cwd=tmp_path, timeout=600)
    assert missing.returncode == 1
    assert "DATASTORE_PKG_LOCATION '/nonexistent.deb' does not exist" in missing.stderr
    assert not [e for e in missing.events() if e.get("event") == "building layer"]

    deb = new_db_deb(tmp_path)
    run = dib(*args, env={**env, "SERVICE_TYPE": "percona", "DATASTORE_PKG_LOCATION": str(deb)}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "percona.tar").is_file()
    layers = json.loads((tmp_path / "percona.manifest.json").read_text())["layers"]
    datastore = [l for l in layers if l["layer"] == "datastore"][0]
    out = run_output(f"factory-layer:{datastore['key']}", ["dpkg-query", "-W", "-f", "${Version}", "factory-test-db"])
    assert out.decode() == "1.0"
