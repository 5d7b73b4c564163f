"""What the stack can build: distros and their datastores, found in the data
(`layers/*.yaml` templates and the elements present)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from factory.elements import dib_elements_dir
from factory.hostpaths import visible
from factory.layers import load_meta, load_stack


@dataclass(frozen=True)
class Catalog:
    distros: dict[str, tuple[str, ...]]  # distro -> datastores
    default_releases: dict[str, str] = field(default_factory=dict)
    releases: dict[str, tuple[str, ...]] = field(default_factory=dict)


def catalog(element_dirs: list[Path], layers_dir: Path | list[Path] | None = None) -> Catalog:
    """Distros and datastores, derived from the layer templates and the elements present.

    A distro is valid when the guest layer's element template names an element
    that exists for it (e.g. `debian-guest`); its datastores are the elements
    matching the datastore layer's template (e.g. `debian-postgresql`).
    """
    stack = load_stack(layers_dir)
    meta = load_meta(layers_dir)

    def listing(dirs: list[Path]) -> list[str]:
        return sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()})

    names = listing(element_dirs)
    # Guest and datastore elements are the factory's (or the user's), never
    # DIB's own distro helpers such as debian-systemd or ubuntu-common.
    dib_dir = visible(dib_elements_dir().resolve()).resolve()
    own = listing([d for d in element_dirs if d.resolve() != dib_dir])
    distro_templates = [t for layer in stack for t in layer.elements if "{distro}" in t and "{datastore}" not in t]
    datastore_templates = [t for layer in stack for t in layer.elements if "{datastore}" in t]

    def matches(template: str, name: str) -> dict[str, str] | None:
        pattern = re.escape(template)
        for key in ("distro", "datastore", "release", "arch"):
            pattern = pattern.replace(re.escape("{" + key + "}"), f"(?P<{key}>[a-z0-9][a-z0-9.]*)")
        m = re.fullmatch(pattern, name)
        return m.groupdict() if m else None

    # Our own distro templates that are not DIB's (DIB ships e.g. debian-minimal
    # for many distros the factory has no guest element for).
    candidates: set[str] = set()
    for template in distro_templates:
        for name in own:
            m = matches(template, name)
            if m and set(m) == {"distro"}:
                candidates.add(m["distro"])
    distros: dict[str, tuple[str, ...]] = {}
    for distro in sorted(candidates):
        needed = [t.replace("{distro}", distro) for t in distro_templates if "{release}" not in t and "{arch}" not in t]
        if not all(n in names for n in needed):
            continue
        stores = set()
        for template in datastore_templates:
            for name in own:
                m = matches(template.replace("{distro}", distro), name)
                if m and set(m) == {"datastore"}:
                    stores.add(m["datastore"])
        produced = {t.replace("{distro}", distro) for t in distro_templates}
        distros[distro] = tuple(sorted(s for s in stores if f"{distro}-{s}" not in produced))
    return Catalog(
        distros=distros,
        default_releases={d: str(v.get("default_release")) for d, v in meta.items() if v.get("default_release")},
        releases={d: tuple(str(r) for r in v.get("releases") or ()) for d, v in meta.items()},
    )
