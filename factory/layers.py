"""The layer stack, read from layers/*.yaml.

Each file declares one layer: its name, the DIB phases it runs and the elements
it brings (templates over the target's distro, release, datastore, arch). Files
are stacked in file-name order; each layer's parent is the one before it, so a
site layer `25-site-hardening.yaml` slots between guest and datastore.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from factory import LAYERS_DIR
from factory.errors import FactoryError

# DIB's phases, in disk-image-create's order. "inside" phases run in the target.
BUILD_PHASES = ("root", "extra-data", "pre-install", "install", "post-install", "post-root")
ASSEMBLE_PHASES = ("block-device", "pre-finalise", "finalise", "cleanup")
ALL_PHASES = BUILD_PHASES + ASSEMBLE_PHASES
INSIDE_PHASES = frozenset({"pre-install", "install", "post-install", "finalise"})

_FIELD = re.compile(r"\{(\w+)\}")
TEMPLATE_FIELDS = frozenset({"distro", "release", "datastore", "arch", "mode"})


@dataclass(frozen=True)
class LayerSpec:
    name: str
    phases: tuple[str, ...]
    elements: tuple[str, ...]  # templates, e.g. "{distro}-guest"
    env: tuple[str, ...] = ()  # target settings this layer's elements receive
    rerun: tuple[str, ...] = ()  # lower elements whose hooks act on each layer's elements
    extra_elements: bool = False  # the user's --element values land here
    extra_packages: bool = False  # the user's --package values land here
    # Elements that replace `elements` in a given datastore mode (container).
    modes: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    source: Path | None = field(default=None, compare=False)

    def element_names(self, values: dict[str, str]) -> list[str]:
        templates = self.modes.get(values.get("mode") or "", self.elements)
        return [render(t, values) for t in templates]


def render(template: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values or values[key] is None:
            raise FactoryError(f"layer template '{template}' needs '{key}', which the target does not set")
        return str(values[key])

    return _FIELD.sub(sub, template)


def _parse(path: Path) -> LayerSpec:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise FactoryError(f"{path}: not valid YAML ({e.__class__.__name__}); fix the file") from e
    if not isinstance(data, dict) or "name" not in data:
        raise FactoryError(f"{path}: a layer file needs at least 'name', 'phases' and 'elements'")
    phases = tuple(data.get("phases") or ())
    bad = [p for p in phases if p not in BUILD_PHASES]
    if bad:
        raise FactoryError(f"{path}: unknown phase(s) {', '.join(bad)}; a layer runs some of: {', '.join(BUILD_PHASES)}")
    elements = tuple(str(e) for e in data.get("elements") or ())
    modes = data.get("modes") or {}
    if not isinstance(modes, dict) or not all(isinstance(v, list) for v in modes.values()):
        raise FactoryError(f"{path}: 'modes' maps a datastore mode to its element list, e.g. container: [docker-datastore]")
    modes = {str(m): tuple(str(e) for e in v) for m, v in modes.items()}
    for e in elements + tuple(e for v in modes.values() for e in v):
        unknown = set(_FIELD.findall(e)) - TEMPLATE_FIELDS
        if unknown:
            raise FactoryError(f"{path}: element '{e}' uses {sorted(unknown)}; templates may use {sorted(TEMPLATE_FIELDS)}")
    return LayerSpec(
        name=str(data["name"]),
        phases=phases,
        elements=elements,
        env=tuple(data.get("env") or ()),
        rerun=tuple(data.get("rerun") or ()),
        extra_elements=bool(data.get("extra_elements", False)),
        extra_packages=bool(data.get("extra_packages", False)),
        modes=modes,
        source=path,
    )


def layers_path(dirs: Path | list[Path] | None = None) -> list[Path]:
    """Folders of layer files: FACTORY_LAYERS_PATH (a user's own layers, e.g. a
    site hardening layer) before this repository's layers/."""
    if isinstance(dirs, Path):
        return [dirs]
    if dirs:
        return list(dirs)
    user = [Path(p) for p in os.environ.get("FACTORY_LAYERS_PATH", "").split(":") if p]
    for d in user:
        if not d.is_dir():
            raise FactoryError(f"FACTORY_LAYERS_PATH entry {d} is not a directory; fix FACTORY_LAYERS_PATH")
    return [*user, LAYERS_DIR]


def _files(dirs: list[Path], pattern: str) -> list[Path]:
    """Files by name across the folders; an earlier folder's file of the same name wins."""
    chosen: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.glob(pattern)):
            chosen.setdefault(p.name, p)
    return [chosen[n] for n in sorted(chosen)]


def load_stack(dirs: Path | list[Path] | None = None) -> list[LayerSpec]:
    dirs = layers_path(dirs)
    files = [p for p in _files(dirs, "*.yaml") if not p.name.startswith("_")]
    if not files:
        raise FactoryError(f"no layer files in {', '.join(map(str, dirs))}; the stack needs at least a base layer")
    stack = [_parse(p) for p in files]
    names = [layer.name for layer in stack]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise FactoryError(f"layer name(s) {', '.join(sorted(dupes))} declared twice in {', '.join(map(str, dirs))}")
    if "root" not in stack[0].phases:
        raise FactoryError(f"{stack[0].source}: the first layer must run the 'root' phase (it makes the initial tree)")
    for layer in stack[1:]:
        if "root" in layer.phases:
            raise FactoryError(f"{layer.source}: only the first layer may run the 'root' phase")
    return stack


def _data(name: str, dirs: Path | list[Path] | None) -> dict:
    files = _files(layers_path(dirs), name)
    if not files:
        return {}
    return yaml.safe_load(files[0].read_text()) or {}


def load_meta(dirs: Path | list[Path] | None = None) -> dict:
    """Distro facts shared by the stack (default releases...), from _distros.yaml."""
    return _data("_distros.yaml", dirs)


def load_container_images(dirs: Path | list[Path] | None = None) -> dict:
    """Container mode's image and default tag per datastore, from _containers.yaml."""
    return _data("_containers.yaml", dirs)


def load_agent_rules(dirs: Path | list[Path] | None = None) -> dict:
    """What guest agent releases need of the image, from _agents.yaml."""
    return _data("_agents.yaml", dirs)


def load_dib_rules(dirs: Path | list[Path] | None = None) -> dict:
    """disk-image-create's conventions as the factory applies them (the
    element cut, the driver's own variables), from _dib.yaml."""
    return _data("_dib.yaml", dirs)
