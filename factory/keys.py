"""The keys: sha256 of everything that can change a layer's bytes, and of
what the assembly adds on top of the top layer.

Pure: the same inputs give the same key on every machine. A clock never enters
a key; rebuilding on purpose (security updates) is `--refresh`, not time.
(The builder image's key, a hash of its build inputs, is engine/builder.py's.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

KEY_SCHEMA = 1  # bump when the meaning of the inputs changes


@dataclass(frozen=True)
class KeyInputs:
    layer: str
    parent: str | None  # the parent layer's key
    phases: tuple[str, ...]
    elements: dict[str, str]  # element name -> tree hash (new and environment.d-sourced ones)
    new_elements: tuple[str, ...]  # the elements whose hooks this layer runs
    dib_version: str
    engine: str  # hash of the factory's own phase runner: how hooks are run shapes the bytes
    builder_image: str  # the builder image's tag: a hash of its recipe, the same on every machine
    env: dict[str, str]  # the explicit environment handed to this layer's elements
    host_inputs: dict[str, str] = field(default_factory=dict)  # env value (host path) -> content hash
    packages: tuple[str, ...] = ()

    def canonical(self) -> str:
        data = asdict(self)
        data["schema"] = KEY_SCHEMA
        data["phases"] = list(self.phases)
        data["new_elements"] = sorted(self.new_elements)
        data["packages"] = list(self.packages)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def layer_key(inputs: KeyInputs) -> str:
    return hashlib.sha256(inputs.canonical().encode()).hexdigest()


def disk_key(top: str, image_size_gib: str | None, assembler: str, builder: str) -> str:
    """What decides the disk itself (the seed of its filesystem UUIDs and disk
    id): not the formats, compression and cluster order it is written in."""
    data = {"top": top, "image_size": image_size_gib, "assembler": assembler, "builder": builder}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def assembly_key(top: str, formats: tuple[str, ...], image_size_gib: str | None, compression: str,
                 qemu_options: str | None, assembler: str, builder: str, bit_identical: bool = False) -> str:
    """Everything that changes the artifact beyond the top layer's key."""
    data = {
        "top": top,
        "formats": sorted(formats),
        "image_size": image_size_gib,
        "compression": compression,
        "qemu_img_options": qemu_options or "",
        "assembler": assembler,
        "builder": builder,
        # Only when asked, so that no other artifact's key changed with it.
        **({"bit_identical": True} if bit_identical else {}),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
