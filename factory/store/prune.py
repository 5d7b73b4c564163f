"""Which layers a prune removes: old ones, unless a kept layer builds on them.
Pure, so the same rule serves the local store and the remote ones."""

from __future__ import annotations

import re

from factory.errors import FactoryError

_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    m = _AGE.match(text.strip())
    if not m:
        raise FactoryError(f"--older-than '{text}' is not an age; use e.g. 30d, 12h, 45m")
    return int(m.group(1)) * _UNITS[m.group(2)]


def prunable(layers: dict[str, tuple[str, float]], limit: float, now: float) -> set[str]:
    """Keys to remove, from {key: (parent key, created epoch)}."""
    old = {k for k, (_, created) in layers.items() if now - created > limit}
    needed: set[str] = set()
    for key in set(layers) - old:
        parent = layers[key][0]
        while parent in layers:
            needed.add(parent)
            parent = layers[parent][0]
    return old - needed
