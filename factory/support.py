"""The support matrix: for each distro and datastore, what a build of it
needs, worked out from the elements themselves (what their element
closures declare) and from this host (which mirrors answer, what the local
store holds)."""

from __future__ import annotations

from dataclasses import dataclass

from factory.config import Catalog, Target
from factory.elements import Element, search_path, unmet_requirement
from factory.errors import FactoryError


@dataclass(frozen=True)
class Support:
    distro: str
    datastore: str
    status: str  # what building it needs, or that it builds from the distro archive
    built_here: bool


def needs(distro: str, datastore: str, paths=None) -> str | None:
    """What the native datastore element, or an element it depends on, asks
    for beyond the distro archive (factory-requires.yaml)."""
    paths = paths or search_path()
    seen: set[str] = set()
    todo = [f"{distro}-{datastore}"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        folder = next((p / name for p in paths if (p / name).is_dir()), None)
        if folder is None:
            continue
        unmet = unmet_requirement(Element(name, folder), {})
        if unmet:
            return f"needs {unmet.split(' (')[0]}"
        deps = folder / "element-deps"
        if deps.is_file():
            todo += [l.strip() for l in deps.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return None


def matrix(cat: Catalog, mirror_ok, built_targets: set[str]) -> list[Support]:
    """mirror_ok(distro) -> None if its mirror answers, else the setting to give."""
    rows = []
    for distro, stores in cat.distros.items():
        mirror = mirror_ok(distro)
        release = cat.default_releases.get(distro, "")
        for datastore in stores:
            status = needs(distro, datastore) or "builds from the distro archive"
            if mirror:
                status = f"needs a mirror not reachable here ({mirror})"
            rows.append(Support(distro, datastore, status, f"{distro}-{release}-{datastore}" in built_targets))
    return rows


def host_mirror_check(distro: str) -> str | None:
    from factory.preflight import check_mirror, mirror_urls

    target = Target(distro=distro, datastore="-")
    try:
        check_mirror(target, timeout=3.0)
    except FactoryError:
        return mirror_urls(target)[1]
    return None


def built_targets() -> set[str]:
    """Targets whose datastore layer is in the local store."""
    try:
        from factory.store.local import list_layers

        return {r.target for r in list_layers() if r.layer == "datastore"}
    except FactoryError:  # no engine: nothing is known to be built
        return set()
