"""Container mode (current Trove): the datastore layer puts a container engine
in the guest and preloads the datastore's image from a local archive into the
guest engine's store, so the first boot neither pulls nor loads it. No registry answers here, so the test makes its own
small image (a static busybox from the Debian archive) and saves it."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from factory.engine.docker import run_output

from tests.conftest import factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
IMAGE = "factory-test/postgres:16"
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", "--datastore-mode", "container",
          "--env", f"DATASTORE_IMAGE={IMAGE}"]


def busybox_image_archive(engine, folder: Path) -> Path:
    """A docker-save archive of a one-binary image named IMAGE."""
    subprocess.run(["apt-get", "download", "-q", "busybox-static"], cwd=folder, check=True, capture_output=True)
    (deb,) = folder.glob("busybox-static_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / "x")], check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder / "x" / "bin" / "busybox", arcname="bin/busybox")
        for applet in ("sh", "true", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    tar_path = folder / "rootfs.tar"
    tar_path.write_bytes(buf.getvalue())
    subprocess.run(["docker", "import", "--change", 'CMD ["/bin/sh"]', str(tar_path), IMAGE], check=True, capture_output=True)
    image = engine.images.get(IMAGE)
    archive = folder / "postgres-16.tar"
    with archive.open("wb") as f:
        for chunk in image.save(named=True):
            f.write(chunk)
    return archive


@pytest.fixture(scope="module")
def archive(engine, tmp_path_factory):
    yield busybox_image_archive(engine, tmp_path_factory.mktemp("image"))
    engine.images.remove(IMAGE)  # made for the test; the archive is what the build used


@pytest.fixture(scope="module")
def artifact(archive, builder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    run = factory("build", *TARGET, "--env", f"DATASTORE_IMAGE_ARCHIVE={archive}", "--output", str(out))
    assert run.returncode == 0, run.stderr[-4000:]
    return Path(run.stdout.strip().splitlines()[-1]), run


def test_container_mode_reuses_base_and_guest_and_preloads_the_image(artifact, engine):
    manifest_path, run = artifact
    states = run.layer_states()
    assert states.get("base") == "cached" and states.get("guest") in ("cached", "built")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["guest_agent"]["datastore_mode"] == "container"
    datastore = next(l for l in manifest["layers"] if l["layer"] == "datastore")
    assert "container-datastore" in datastore["elements"]
    assert any(p.startswith("docker.io=") for p in datastore["packages_added"])
    top = f"factory-layer:{datastore['key']}"
    listing = run_output(top, ["sh", "-c", "ls /var/lib/trove/preload 2>/dev/null; cat /etc/trove/datastore; id -nG trove; "
                                           "cat /var/lib/docker/image/overlay2/repositories.json"]).decode()
    # A one-layer image is written into the guest engine's store at build
    # time: no archive is left for the first boot to load.
    assert ".tar" not in listing
    assert f'"{IMAGE}": "sha256:' in listing
    assert f"postgresql docker.service {IMAGE}" in listing
    assert "docker" in listing.split()


def test_container_mode_boots_with_the_image_loaded_and_runnable(artifact):
    manifest_path, _ = artifact
    run = factory("verify", str(manifest_path))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    rows = {name: next(l for l in run.stdout.splitlines() if name in l)
            for name in ("preloaded datastore image in the guest's engine", "preloaded datastore image starts",
                         "guest agent read guest_info.conf", "guest agent runs as trove")}
    assert all("pass" in row for row in rows.values()), rows


def test_an_archive_that_is_not_a_saved_image_fails_before_any_layer(tmp_path, builder):
    bogus = tmp_path / "not-an-image.tar"
    bogus.write_bytes(b"nope")
    run = factory("build", *TARGET, "--env", f"DATASTORE_IMAGE_ARCHIVE={bogus}", "--output", str(tmp_path))
    assert run.returncode == 2
    (line,) = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert "not a docker-save archive" in line
    assert "layer built" not in run.stderr
