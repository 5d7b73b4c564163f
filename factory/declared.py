"""What elements declare about the values they accept, checked before
anything is built: an element's `factory-accepts.yaml` names the pattern each
of its settings must match (the same one its hooks enforce, with an example
to pass instead) and, for a datastore element, the version each release's
archive ships. Pure, apart from reading the declarations.

    values:
      GUEST_USERNAME: {pattern: '^[a-z_][a-z0-9_-]{0,31}$', example: trove, why: a Linux account name}
    datastore_versions: {bookworm: "15", trixie: "17"}
"""

from __future__ import annotations

import re
from typing import Iterable

import yaml

from factory.elements import Element

ACCEPTS_FILE = "factory-accepts.yaml"
# Settings that bring the datastore's packages from elsewhere than the archive.
OWN_PACKAGES = ("DATASTORE_PKG_LOCATION", "DATASTORE_REPO_URL")


def accepts(element: Element) -> dict:
    path = element.path / ACCEPTS_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def same_version(asked: str, shipped: str) -> bool:
    """15 and 15.4 name the same release line; 13 and 15 do not."""
    return asked == shipped or asked.startswith(shipped + ".") or shipped.startswith(asked + ".")


def value_problems(element: str, rules: dict, env: dict[str, str]) -> list[str]:
    out = []
    for var, rule in sorted(rules.items()):
        value = env.get(var)
        if value is not None and not re.fullmatch(rule["pattern"], value):
            out.append(f"{var} '{value}' is refused by element {element}: it must be {rule['why']}; "
                       f"pass e.g. --env {var}={rule['example']}")
    return out


def version_problem(shipped: dict, target) -> str | None:
    asked, have = target.datastore_version, shipped.get(target.release)
    env = target.env_dict()
    if not asked or not have or target.mode != "native" or any(env.get(v) for v in OWN_PACKAGES):
        return None
    if same_version(asked, str(have)):
        return None
    return (f"--datastore-version {asked}: this distro release ships {target.datastore} {have} "
            f"({target.distro} {target.release}); pass --datastore-version {have}, bring the packages with "
            f"DATASTORE_PKG_LOCATION or DATASTORE_REPO_URL, or use --datastore-mode container")


def problems(elements: Iterable[Element], target) -> list[str]:
    """One line per value an element of the target would refuse."""
    env = target.element_env()
    out = []
    for element in sorted(elements, key=lambda e: e.name):
        declaration = accepts(element)
        out += value_problems(element.name, declaration.get("values") or {}, env)
        problem = version_problem(declaration.get("datastore_versions") or {}, target)
        if problem:
            out.append(problem)
    return out
