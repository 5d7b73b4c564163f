"""The support matrix: for each distro and datastore, what a build of it
needs, worked out from the elements themselves (what their element
closures declare) and from this host (which mirrors answer, what the local
store holds)."""

from __future__ import annotations

from dataclasses import dataclass

from factory import compat
from factory.conformance import PORTS
from factory.catalog import Catalog
from factory.target import Target
from factory.elements import Element, search_path, unmet_requirement
from factory.errors import FactoryError


@dataclass(frozen=True)
class Support:
    distro: str
    datastore: str
    status: str  # what building it needs, or that it builds from the distro archive
    built_here: bool
    trove: str = ""  # where the last native-era agent can be driven by Trove, or why nowhere
    mode: str = "native"  # or container: the status names the image source that works here


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
            ok, why = compat.native_releases(distro, cat.releases.get(distro, ()), datastore)
            if datastore not in PORTS:
                trove = "not checked: verify --trove has no client for it"
            else:
                trove = f"no known problem: 13.x agent on {', '.join(ok)}" if ok else f"no release: {why}"
            rows.append(Support(distro, datastore, status, f"{distro}-{release}-{datastore}" in built_targets, trove))
    return rows


def container_matrix(cat: Catalog, mirror_ok, registry_ok: bool, built_targets: set[str]) -> list[Support]:
    """Container mode: per datastore with a known image, where its image can
    come from on this host (a registry, the distro archive, or only a file)."""
    from factory.layers import load_container_images
    from factory.recipes import load_recipe

    images = load_container_images()
    rows = []
    for distro, stores in cat.distros.items():
        mirror = mirror_ok(distro)
        release = cat.default_releases.get(distro, "")
        for datastore in (s for s in stores if s in images):
            upstream = f"{images[datastore]['image']}:{images[datastore]['version']}"
            try:
                built = load_recipe(datastore, release).ref
            except FactoryError:
                built = None
            if registry_ok:
                status = f"image {upstream} from its registry"
            elif built and not mirror:
                status = f"image {built} built from the distro archive (no registry answers)"
            else:
                status = f"no registry answers: needs --datastore-image archive:FILE ({upstream})"
            rows.append(Support(distro, datastore, status, f"{distro}-{release}-{datastore}" in built_targets,
                                "-", mode="container"))
    return rows


def host_registry_check() -> bool:
    """Whether a registry answers for the first known image (one probe)."""
    from factory.engine.docker import registry_answers
    from factory.layers import load_container_images

    first = next(iter(load_container_images().values()), None)
    try:
        return bool(first) and registry_answers(f"{first['image']}:{first['version']}")
    except FactoryError:  # no engine: nothing can be pulled
        return False


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


def print_matrix(rows: list[Support], cat: Catalog) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="support matrix (native: packages in the image; container: the image the agent runs, and its source here)",
                  title_justify="left")
    for col in ("distro", "default release", "datastore", "mode", "status", "built here", "verify --trove, native mode"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.distro, cat.default_releases.get(r.distro, "?"), r.datastore, r.mode, r.status,
                      "yes" if r.built_here else "-", r.trove)
    Console(width=max(Console().width, 140)).print(table)
