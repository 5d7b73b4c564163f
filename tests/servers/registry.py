"""An OCI registry for tests: Debian's docker-registry (distribution 2.8) on
127.0.0.1, no auth, storage in a temporary folder, started and stopped by PID."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.servers import Processes, free_port, wait_http

_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass
class Registry:
    root: Path
    port: int = 0
    repo: str = "factory/layers"

    def __post_init__(self):
        self.port = self.port or free_port()
        self.processes = Processes(self.root)
        self.process = None

    @property
    def url(self) -> str:
        return f"oci://127.0.0.1:{self.port}/{self.repo}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/{self.repo}"

    def start(self) -> Registry:
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.process = self.processes.start("registry", [_binary(), "serve", str(config)])
        try:
            wait_http(f"http://127.0.0.1:{self.port}/v2/", self.process, self.processes, "registry", timeout=10)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.processes.stop_all()

    def manifest(self, tag: str) -> dict:
        r = requests.get(f"{self.api}/manifests/{tag}", headers={"Accept": _MANIFEST}, timeout=30)
        r.raise_for_status()
        return r.json()

    def blob_file(self, digest: str) -> Path:
        hexdigest = digest.split(":", 1)[1]
        return self.root / "data" / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def blobs(self) -> dict[str, int]:
        """Every blob stored: digest -> size."""
        folder = self.root / "data" / "docker/registry/v2/blobs/sha256"
        return {f"sha256:{p.parent.name}": p.stat().st_size for p in folder.glob("*/*/data")} if folder.exists() else {}


def _binary() -> str:
    path = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(path).exists():
        raise RuntimeError("docker-registry is not installed; run scripts/setup-host.sh --test")
    return path


def flip_byte(path: Path, offset: int | None = None) -> None:
    """One byte of a stored file changed in place (the middle, by default)."""
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        f.seek(size // 2 if offset is None else offset)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
