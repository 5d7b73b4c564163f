"""Artifacts to publish without building one: a real qcow2 (qemu-img) of
random bytes, with the manifest and .sha256 a build writes beside it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

# Distinctive fake credentials: the no-leak checks grep every output for them.
FAKE_OS_PASSWORD = "os-fake-password-7f3a9c"


def make_artifact(folder: Path, mib: int, key: str = "0f" * 32) -> Path:
    """Returns the manifest path of a debian/bookworm/postgresql artifact."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"debian-bookworm-postgresql-{key[:12]}"
    raw, image = folder / f"{stem}.raw", folder / f"{stem}.qcow2"
    raw.write_bytes(os.urandom(mib << 20))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    data = image.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (folder / f"{image.name}.sha256").write_text(f"{digest}  {image.name}\n")
    manifest = {
        "schema": 1,
        "target": {"distro": "debian", "release": "bookworm", "arch": "amd64", "datastore": "postgresql",
                   "datastore_version": None},
        "assembly_key": key,
        "layers": [{"layer": "datastore", "packages_added": ["postgresql=15+248+deb12u2", "postgresql-15=15.20-0"]}],
        "images": {"qcow2": {"file": image.name, "bytes": len(data), "sha256": digest}},
    }
    path = folder / f"{stem}.manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact"), 24)
