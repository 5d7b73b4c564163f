"""DIB elements: where they are found, their dependency closure, their tree hashes.

Dependency resolution is DIB's own code (`element-deps`, `element-provides`,
exactly one `operating-system`), so a set of elements expands here exactly as
`disk-image-create` would expand it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from diskimage_builder import element_dependencies as dib_deps
from diskimage_builder import paths as dib_paths

from factory import ELEMENTS_DIR
from factory.errors import FactoryError
from factory.hostpaths import visible


def dib_elements_dir() -> Path:
    return Path(dib_paths.get_path("elements"))


def dib_lib_dir() -> Path:
    return Path(dib_paths.get_path("lib"))


def dib_version() -> str:
    from diskimage_builder import version

    return version.version_info.version_string()


def search_path(user_path: str | None = None) -> list[Path]:
    """Element folders, earlier ones overriding later: the user's ELEMENTS_PATH,
    this repository's elements, then DIB's bundled elements."""
    if user_path is None:
        user_path = os.environ.get("ELEMENTS_PATH", "")
    dirs = [Path(p).resolve() for p in user_path.split(":") if p]
    for d in dirs:
        if not d.is_dir():
            raise FactoryError(f"ELEMENTS_PATH entry {d} is not a directory; fix ELEMENTS_PATH")
    out: list[Path] = []
    for d in [*dirs, ELEMENTS_DIR.resolve(), dib_elements_dir().resolve()]:
        d = visible(d)
        if d not in out:
            out.append(d)
    return out


@dataclass(frozen=True)
class Element:
    name: str
    path: Path


def with_dib_defaults(names: list[str], arch: str) -> list[str]:
    """disk-image-create's implicit elements: `base` always, and a block-device
    element when `vm` is asked for without one."""
    out = list(names)
    if "vm" in out and not any(n.startswith("block-device-") for n in out):
        out.append("block-device-efi" if arch in ("arm64", "aarch64") else "block-device-mbr")
    if "base" not in out:
        out.insert(0, "base")
    return out


def closure(names: list[str], paths: list[Path]) -> dict[str, Element]:
    """All elements `names` pull in, by DIB's rules, keyed by name."""
    try:
        resolved = dib_deps.get_elements(list(names), ":".join(str(p) for p in paths))
    except dib_deps.MissingElementException as e:
        raise FactoryError(f"{e}; add its folder to ELEMENTS_PATH or fix the layer's element list") from e
    except dib_deps.MissingOSException as e:
        raise FactoryError(f"no operating-system element among {', '.join(names)}; the base layer needs e.g. debian-minimal") from e
    except dib_deps.AlreadyProvidedException as e:
        raise FactoryError(f"element conflict: {e or 'an element is provided twice'}") from e
    return {name: Element(name, Path(path)) for name, path in resolved}


def available(paths: list[Path]) -> list[str]:
    return sorted({p.name for d in paths if d.is_dir() for p in d.iterdir() if p.is_dir()})


REQUIRES_FILE = "factory-requires.yaml"


def unmet_requirement(element: Element, env: dict[str, str]) -> str | None:
    """An element may name settings of which one must be given
    (factory-requires.yaml: any_of, why); None when it names none or one is set."""
    import yaml

    path = element.path / REQUIRES_FILE
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    names = [str(n) for n in data.get("any_of") or ()]
    if not names or any(env.get(n) for n in names):
        return None
    return f"{' or '.join(names)} ({data.get('why', 'required by ' + element.name)})"
