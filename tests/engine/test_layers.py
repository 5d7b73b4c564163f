"""End to end: layers built from DIB's debian-minimal and this repo's elements,
cached by key, rebuilt exactly when their inputs change."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from factory.settings import state_dir
from tests.conftest import NATIVE_AGENT, edited_element, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]

TARGET = ["--distro", "debian", "--release", "bookworm", *NATIVE_AGENT]


def plan(*args: str, env: dict | None = None) -> dict[str, dict]:
    run = factory("plan", "--as", "json", *args, env=env)
    assert run.returncode == 0, run.stderr
    return {layer["layer"]: layer for layer in json.loads(run.stdout)[0]["layers"]}


def test_build_postgresql_rootfs(tmp_path, builder):
    run = factory("build", *TARGET, "--datastore", "postgresql", "--format", "tar", "--output", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    tarballs = list(tmp_path.glob("debian-bookworm-postgresql-*.tar"))
    assert len(tarballs) == 1
    names = tarfile.open(tarballs[0]).getnames()
    assert any(n.endswith("/bin/postgres") and "usr/lib/postgresql" in n for n in names)
    assert any(n.endswith("etc/systemd/system/trove-guest.service") for n in names)
    assert not any(n.startswith("./tmp/factory-trust/") and n.endswith(".pem") and tarfile.open(tarballs[0]).getmember(n).size for n in names)
    # No build-time iSCSI name, in the tree or in the initramfs (first-boot-identities); the
    # initramfs made once, after every package (one-initramfs), with the disk drivers a guest
    # boots from, and the real update-initramfs back for later layers.
    layers = plan(*TARGET, "--datastore", "postgresql")
    look = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", f"factory-layer:{layers['datastore']['key']}", "-c",
                           "cat /etc/iscsi/initiatorname.iscsi; unmkinitramfs /boot/initrd.img-* /tmp/x && "
                           "find /tmp/x -name initiatorname.iscsi -exec cat {} +; find /tmp/x -name 'virtio_blk.ko*'; "
                           "echo diversions $(dpkg-divert --list | grep -c one-initramfs); "
                           "echo stand-in $(grep -c one-initramfs /usr/sbin/update-initramfs)"],
                          capture_output=True, text=True)
    out = look.stdout.split("\n")
    assert out[:2] == ["GenerateName=yes", "GenerateName=yes"], look.stdout + look.stderr
    assert any(line.endswith("/virtio_blk.ko") or "/virtio_blk.ko." in line for line in out), look.stdout
    assert "diversions 0" in out and "stand-in 0" in out, look.stdout
    base_log = (state_dir() / "logs" / f"base-{layers['base']['key'][:16]}.log").read_text()
    assert base_log.count("update-initramfs: Generating") == 1
    assert "deferred to the end of the base layer (one-initramfs)" in base_log
    assert "making the initramfs again" not in base_log


def test_unchanged_rebuild_is_all_cache_hits(tmp_path, builder):
    run = factory("build", *TARGET, "--datastore", "postgresql", "--format", "tar", "--output", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.layer_states() == {"base": "cached", "guest": "cached", "datastore": "cached"}


def test_datastore_element_change_rebuilds_only_the_datastore(tmp_path, builder):
    env = {"ELEMENTS_PATH": str(edited_element(tmp_path, "debian-postgresql"))}
    before, after = plan(*TARGET, "--datastore", "postgresql"), plan(*TARGET, "--datastore", "postgresql", env=env)
    assert before["base"]["key"] == after["base"]["key"]
    assert before["guest"]["key"] == after["guest"]["key"]
    assert before["datastore"]["key"] != after["datastore"]["key"]
    run = factory("build", *TARGET, "--datastore", "postgresql", "--format", "tar", "--output", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.layer_states() == {"base": "cached", "guest": "cached", "datastore": "built"}


def test_guest_element_change_rebuilds_guest_and_datastore(tmp_path, builder):
    env = {"ELEMENTS_PATH": str(edited_element(tmp_path, "trove-guest"))}
    run = factory("build", *TARGET, "--datastore", "postgresql", "--format", "tar", "--output", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.layer_states() == {"base": "cached", "guest": "built", "datastore": "built"}
    # The agent's dependency set went to a wheelhouse in the host's pip cache
    # (elements/trove-guest), complete, not into the image; the build installed from it.
    houses = [h for h in (state_dir() / "dib-cache" / "pip" / "wheelhouse").glob("trove==13.0.1-*") if (h / ".complete").exists()]
    assert houses and list(houses[0].glob("trove-13.0.1-*.whl")) and list(houses[0].glob("oslo.messaging-*.whl")) + list(houses[0].glob("oslo_messaging-*.whl"))
    names = tarfile.open(next(tmp_path.glob("debian-bookworm-postgresql-*.tar"))).getnames()
    assert not [n for n in names if n.startswith(("./root/.cache", "./tmp/in_target.d/pip-cache"))]


def test_an_agent_release_pip_cannot_resolve_fails_clearly_and_leaves_no_wheelhouse(tmp_path, builder):
    houses = state_dir() / "dib-cache" / "pip" / "wheelhouse"
    run = factory("build", "--distro", "debian", "--release", "bookworm", "--agent-source", "pypi:13.0.99",
                  "--datastore", "postgresql", "--format", "tar", "--output", str(tmp_path))
    assert run.returncode != 0
    assert "could not resolve trove==13.0.99 (with agent-constraints-13.txt) from the package index" in run.stderr
    # Neither a wheelhouse that a later build would trust nor a half-made one.
    assert not list(houses.glob("trove==13.0.99-*"))
    assert not list(tmp_path.glob("*.tar"))


def test_second_datastore_reuses_base_and_guest(tmp_path, builder):
    env = {"ELEMENTS_PATH": str(edited_element(tmp_path, "debian-redis"))}
    run = factory("build", *TARGET, "--datastore", "redis", "--format", "tar", "--output", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.layer_states() == {"base": "cached", "guest": "cached", "datastore": "built"}
    names = tarfile.open(next(tmp_path.glob("debian-bookworm-redis-*.tar"))).getnames()
    assert any(n.endswith("usr/bin/redis-server") for n in names)


def test_two_builds_of_the_same_target_build_each_layer_once(tmp_path, builder):
    import os
    import subprocess

    from tests.conftest import FACTORY, Run

    env = {**os.environ, "ELEMENTS_PATH": str(edited_element(tmp_path, "debian-mariadb"))}
    cmd = [FACTORY, "--log-format", "json", "build", *TARGET, "--datastore", "mariadb", "--format", "tar"]
    procs = [subprocess.Popen([*cmd, "--output", str(tmp_path / f"out{i}")], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        assert p.returncode == 0, err[-3000:]
        runs.append(Run(p.returncode, out, err))
    states = sorted(r.layer_states()["datastore"] for r in runs)
    assert states == ["built", "cached"]


def test_layers_ls_lists_the_stack_and_rm_takes_descendants(tmp_path, builder):
    env = {"ELEMENTS_PATH": str(edited_element(tmp_path, "debian-redis"))}
    run = factory("build", *TARGET, "--datastore", "redis", "--format", "tar", "--output", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    keys = plan(*TARGET, "--datastore", "redis", env=env)
    listed = {l["key"]: l for l in json.loads(factory("layers", "ls", "--as", "json").stdout)}
    for layer in ("base", "guest", "datastore"):
        assert keys[layer]["key"] in listed
    assert listed[keys["datastore"]["key"]]["parent"] == keys["guest"]["key"]
    removed = factory("layers", "rm", keys["datastore"]["key"][:20])
    assert removed.returncode == 0 and keys["datastore"]["key"] in removed.stdout
    assert keys["datastore"]["key"] not in {l["key"] for l in json.loads(factory("layers", "ls", "--as", "json").stdout)}
    assert keys["guest"]["key"] in {l["key"] for l in json.loads(factory("layers", "ls", "--as", "json").stdout)}
