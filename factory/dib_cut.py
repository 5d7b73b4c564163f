"""disk-image-create's element list, cut into the factory's layers by the
rules in layers/_dib.yaml (`cut:`), not by code: the distro root element
names the distro, `{distro}-guest` goes to guest, `{distro}-<datastore>` to
datastore (and names the datastore), every other element to base, unless its
own dependencies sit higher: then to the lowest layer that holds them, so
DIB's order stays correct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from factory.catalog import Catalog
from factory.elements import closure
from factory.errors import UsageError
from factory.layers import load_dib_rules, load_stack


@dataclass(frozen=True)
class Placed:
    element: str
    layer: str
    why: str


@dataclass
class Cut:
    distro: str
    datastore: str
    placed: list[Placed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extra_elements(self, implied: set[str]) -> tuple[str, ...]:
        """The elements the layer files do not already bring, as --element
        values (LAYER:NAME above the base layer)."""
        out = []
        for p in self.placed:
            if p.why.startswith(("root", "rule", "implied")) or p.element in implied:
                continue
            out.append(p.element if p.layer == "base" else f"{p.layer}:{p.element}")
        return tuple(out)


def _pattern(template: str, distro: str) -> re.Pattern:
    text = re.escape(template.replace("{distro}", distro)).replace(re.escape("{datastore}"), "(?P<datastore>.+)")
    return re.compile(text + r"\Z")


def _root(elements: list[str], roots: dict[str, str]) -> tuple[str, str]:
    found = [e for e in elements if e in roots]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(found)})"
        raise UsageError(f"{what} distribution root element; name exactly one of {', '.join(sorted(roots))}")
    return found[0], roots[found[0]]


def cut(elements: list[str], cat: Catalog, paths: list[Path], rules: dict | None = None) -> Cut:
    """Place each element of a disk-image-create command line in a layer."""
    rules = (rules if rules is not None else load_dib_rules()).get("cut") or {}
    root, distro = _root(elements, {str(k): str(v) for k, v in (rules.get("roots") or {}).items()})
    implied = set(rules.get("implied") or ())
    default = str(rules.get("default") or "base")
    order = [spec.name for spec in load_stack()]
    placed: list[Placed] = [Placed(root, default, f"root: distro {distro}")]
    datastores: list[str] = []
    unplaced: list[str] = []
    for element in [e for e in elements if e != root]:
        layer, why = _by_rule(element, distro, cat, rules.get("rules") or [], datastores)
        if layer:
            placed.append(Placed(element, layer, why))
        elif element in implied:
            placed.append(Placed(element, default, "implied: every base layer has it"))
        else:
            unplaced.append(element)
    if len(datastores) != 1:
        known = ", ".join(f"{distro}-{d}" for d in cat.distros.get(distro, ()))
        raise UsageError(f"{'no' if not datastores else 'more than one'} datastore element; a Trove guest image has "
                         f"exactly one of {known or '(none for ' + distro + ')'}")
    if not any(p.layer == "guest" for p in placed):
        raise UsageError(f"no {distro}-guest element: every image the factory builds carries the Trove guest agent; "
                         f"add {distro}-guest")
    for element in unplaced:
        placed.append(_lowest(element, distro, placed, order, default, paths))
    result = Cut(distro=distro, datastore=datastores[0], placed=sorted(placed, key=lambda p: order.index(p.layer)))
    if root != f"{distro}-minimal":
        result.notes.append(f"{root}: the base layer builds {distro} from its archive, as {distro}-minimal does")
    return result


def _by_rule(element: str, distro: str, cat: Catalog, rules: list[dict], datastores: list[str]) -> tuple[str | None, str]:
    for rule in rules:
        m = _pattern(str(rule["match"]), distro).match(element)
        if not m:
            continue
        store = m.groupdict().get("datastore")
        if store is not None and store not in cat.distros.get(distro, ()):
            continue
        if store is not None:
            datastores.append(store)
        return str(rule["layer"]), f"rule {rule['match']}"
    return None, ""


def _lowest(element: str, distro: str, placed: list[Placed], order: list[str], default: str,
            paths: list[Path]) -> Placed:
    """The lowest layer at or above `default` whose named elements' own
    dependencies this element's closure does not reach above."""
    base_os = f"{distro}-minimal"
    below = set(closure([base_os], paths))
    mine = set(closure([base_os, element], paths)) - below
    layer, why = default, f"default: {default}"
    for p in placed:
        theirs = set(closure([base_os, p.element], paths)) - below if p.layer != default else set()
        shared = sorted(mine & theirs)
        if shared and order.index(p.layer) > order.index(layer):
            layer, why = p.layer, f"needs {', '.join(shared[:3])} ({p.element}'s, in {p.layer})"
    return Placed(element, layer, why)
