"""The artifact manifest: what went into an image, and what came out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from factory.errors import FactoryError

MANIFEST_SCHEMA = 1


@dataclass
class Manifest:
    target: dict
    assembly_key: str
    layers: list[dict]  # name, key, parent, elements, element tree hashes, packages added
    guest_agent: dict = field(default_factory=dict)  # source, datastore mode, warnings
    datastore_images: list[dict] = field(default_factory=list)  # container mode: image, source, id, digest, key
    images: dict[str, dict] = field(default_factory=dict)  # format -> file, bytes, sha256
    tools: dict[str, str] = field(default_factory=dict)
    tree_bytes: int = 0
    seconds: float = 0.0
    supply_chain: dict[str, str] = field(default_factory=dict)  # sbom, provenance[, signature] -> file beside the image
    tree_sha256: str | None = None  # the root tree's digest (diff.tree_digest), when the tar format is built

    def to_json(self) -> dict:
        return {
            "schema": MANIFEST_SCHEMA,
            "target": self.target,
            "assembly_key": self.assembly_key,
            "guest_agent": self.guest_agent,
            "datastore_images": self.datastore_images,
            "layers": self.layers,
            "images": self.images,
            "tools": self.tools,
            "tree_bytes": self.tree_bytes,
            "assemble_seconds": round(self.seconds, 1),
            "supply_chain": self.supply_chain,
            "tree_sha256": self.tree_sha256,
        }

    def write(self, path: Path) -> None:
        partial = path.with_name(path.name + ".part")
        partial.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        partial.rename(path)


def read(path: Path) -> dict:
    try:
        man = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FactoryError(f"{path} is not a manifest factory build wrote ({getattr(e, 'strerror', None) or e}); "
                           "pass the image or the .manifest.json beside it") from e
    if not isinstance(man, dict) or not isinstance(man.get("images"), dict) or not isinstance(man.get("target"), dict):
        raise FactoryError(f"{path} is not a manifest factory build wrote (no images or target); "
                           "pass the image or the .manifest.json beside it")
    return man


def artifact_for(path: Path) -> tuple[Path, dict]:
    """(image, manifest) from an image path or its manifest path."""
    path = Path(path)
    if path.name.endswith(".manifest.json"):
        man = read(path)
        images = man.get("images", {})
        fmt = "qcow2" if "qcow2" in images else next((f for f in images if f != "tar"), None)
        if not fmt:
            raise FactoryError(f"{path} names no bootable image (formats: {', '.join(images) or 'none'})")
        return path.parent / images[fmt]["file"], man
    stem = path.name.rsplit(".", 1)[0]
    man_path = path.with_name(f"{stem}.manifest.json")
    if not man_path.exists():
        raise FactoryError(f"no manifest beside {path} ({man_path.name}); pass an image that factory build made")
    return path, read(man_path)
