"""The artifact manifest: what went into an image, and what came out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_SCHEMA = 1


@dataclass
class Manifest:
    target: dict
    assembly_key: str
    layers: list[dict]  # name, key, parent, elements, element tree hashes, packages added
    guest_agent: dict = field(default_factory=dict)  # source, datastore mode, warnings
    images: dict[str, dict] = field(default_factory=dict)  # format -> file, bytes, sha256
    tools: dict[str, str] = field(default_factory=dict)
    tree_bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "schema": MANIFEST_SCHEMA,
            "target": self.target,
            "assembly_key": self.assembly_key,
            "guest_agent": self.guest_agent,
            "layers": self.layers,
            "images": self.images,
            "tools": self.tools,
            "tree_bytes": self.tree_bytes,
            "assemble_seconds": round(self.seconds, 1),
        }

    def write(self, path: Path) -> None:
        partial = path.with_name(path.name + ".part")
        partial.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        partial.rename(path)


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())
