"""The artifact being published: one disk image, its manifest and checksum
file, and what the destinations derive from them (pure)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from factory import disk_image
from factory import manifest as manifests
from factory.errors import FactoryError


@dataclass(frozen=True)
class Artifact:
    image: Path
    manifest_path: Path
    manifest: dict
    format: str
    sha256: str
    bytes: int

    @property
    def checksum_path(self) -> Path:
        return self.image.with_name(self.image.name + ".sha256")

    @property
    def target(self) -> dict:
        return self.manifest["target"]

    @property
    def stem(self) -> str:
        """distro-release-datastore-key, the name builds give the artifact."""
        return self.manifest_path.name.removesuffix(".manifest.json")

    @property
    def key(self) -> str:
        return self.manifest["assembly_key"]

    def datastore_mode(self) -> str | None:
        """native (packages in the image) or container (an image the agent runs)."""
        return (self.manifest.get("guest_agent") or {}).get("datastore_mode")

    def datastore_version(self) -> str | None:
        """The version asked for; else, in container mode, the tag of the
        preloaded image (Trove wants the version to be that tag); else the
        one the datastore layer installed: the upstream version of the
        package named after the datastore (or its -server), e.g.
        postgresql 15+248 -> 15."""
        if self.target.get("datastore_version"):
            return self.target["datastore_version"]
        images = (self.target.get("env") or {}).get("DATASTORE_IMAGE", "").split()
        if self.datastore_mode() == "container":  # one version only when the guest carries one image
            image = images[0] if len(images) == 1 else ""
            return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
        datastore = self.target["datastore"]
        for layer in self.manifest.get("layers", []):
            if layer.get("layer") != "datastore":
                continue
            for pkg in layer.get("packages_added", []):
                name, _, version = pkg.partition("=")
                if name in (datastore, f"{datastore}-server") and version:
                    return re.split(r"[+~-]", version.split(":")[-1])[0]
        return None

    def packages(self) -> set[str]:
        return {p.partition("=")[0] for layer in self.manifest.get("layers", []) for p in layer.get("packages_added", [])}

    def latest_name(self) -> str:
        """The stable name of the newest image of this distro/release/datastore
        (and arch: an arm64 image must not replace the amd64 one)."""
        t = self.target
        parts = [t["distro"], t["release"], t["datastore"]]
        if t.get("datastore_version"):
            parts.append(t["datastore_version"])
        parts.append(t.get("arch") or "amd64")
        return "-".join(parts)

    def object_names(self, prefix: str) -> dict[str, str]:
        """Where each file goes under a prefix; the latest pointer under latest/."""
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        return {"image": base + self.image.name, "checksum": base + self.checksum_path.name,
                "manifest": base + self.manifest_path.name, "latest": f"{base}latest/{self.latest_name()}.json"}

    def supply_chain(self, prefix: str) -> dict[str, Path]:
        """Object name -> file of the SBOM and provenance (and signature) beside the image."""
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        return {base + file: self.manifest_path.with_name(file) for file in (self.manifest.get("supply_chain") or {}).values()}

    def latest_pointer(self, locations: dict[str, str]) -> bytes:
        """What a "latest" pointer holds: where the image, checksum and
        manifest are, and what the image is."""
        body = {"name": self.latest_name(), "sha256": self.sha256, "bytes": self.bytes, "format": self.format,
                "assembly_key": self.key, **locations}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    def metadata(self) -> dict[str, str]:
        """Object metadata (S3 x-amz-meta-*, Swift X-Object-Meta-*): ASCII
        keys and values only."""
        t = self.target
        meta = {"factory-sha256": self.sha256, "factory-key": self.key, "format": self.format,
                "distro": t["distro"], "release": t["release"], "datastore": t["datastore"],
                "arch": t.get("arch") or "amd64"}
        version = self.datastore_version()
        if version:
            meta["datastore-version"] = version
        return meta


def load(path: Path) -> Artifact:
    """The artifact from its image or its manifest; checks that the files the
    manifest names are there and of the size it says."""
    path = Path(path)
    if not path.exists():
        raise FactoryError(f"{path} not found; give a built image (.qcow2) or its .manifest.json")
    image, man = manifests.artifact_for(path)
    manifest_path = image.with_name(f"{image.name.rsplit('.', 1)[0]}.manifest.json")
    if path.name.endswith(".manifest.json"):
        manifest_path = path
    entry = next(((fmt, e) for fmt, e in man.get("images", {}).items() if e.get("file") == image.name), None)
    if entry is None:
        raise FactoryError(f"{manifest_path.name} does not list {image.name}; publish an image that factory build made")
    fmt, info = entry
    if not image.exists() or image.stat().st_size != info["bytes"]:
        raise FactoryError(f"{image} is missing or not the size its manifest says ({info['bytes']} bytes); rebuild it")
    artifact = Artifact(image=image, manifest_path=manifest_path, manifest=man, format=fmt,
                        sha256=info["sha256"], bytes=info["bytes"])
    if not artifact.checksum_path.exists():
        raise FactoryError(f"{artifact.checksum_path.name} is missing beside {image.name}; rebuild the artifact")
    missing = [p.name for p in artifact.supply_chain("").values() if not p.is_file()]
    if missing:
        raise FactoryError(f"{', '.join(missing)} missing beside {image.name}; rebuild the artifact")
    disk_image.check(image, fmt, artifact.sha256)
    return artifact
