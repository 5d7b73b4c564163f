"""An OCI registry for tests: Debian's docker-registry (distribution 2.8) on
127.0.0.1, no auth, storage in a temporary folder, started and stopped by PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    root: Path
    port: int
    process: subprocess.Popen | None = None
    repo: str = "factory/layers"

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
        log = open(self.root / "registry.log", "a")
        self.process = subprocess.Popen([_binary(), "serve", str(config)], stdout=log, stderr=log)
        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/v2/", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the registry did not answer; see {self.root / 'registry.log'}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

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
