"""The local store: layers are images in the engine, tagged factory-layer:<key>,
labelled with the inputs of their key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import docker

from factory import attest
from factory.engine.docker import client
from factory.errors import FactoryError
from factory.stored import LABEL, layer_tag
from factory.store.prune import parse_age, prunable


@dataclass(frozen=True)
class StoredLayer:
    key: str
    layer: str
    parent: str
    target: str
    size: int  # bytes this layer adds on top of its parent
    created: float  # epoch seconds
    image_id: str

    def to_json(self) -> dict:
        return {"key": self.key, "layer": self.layer, "parent": self.parent or None, "target": self.target,
                "size": self.size, "created": datetime.fromtimestamp(self.created).isoformat(timespec="seconds")}


def layer_image(key: str):
    """The engine's image of a layer in the local store."""
    try:
        return client().images.get(layer_tag(key))
    except docker.errors.ImageNotFound as e:
        raise FactoryError(f"layer {key[:16]} is not in the local store; build it first") from e


def own_diffs(ref: str) -> list[str]:
    """The diff digests a layer image adds over its parent layer, bottom first."""
    image = client().images.get(ref)
    diffs = list(image.attrs["RootFS"]["Layers"])
    parent = (image.labels or {}).get(f"{LABEL}.parent")
    if not parent:
        return diffs
    try:
        below = list(client().images.get(layer_tag(parent)).attrs["RootFS"]["Layers"])
    except docker.errors.ImageNotFound:
        return diffs
    return diffs[len(below):] if diffs[:len(below)] == below else diffs


def list_layers() -> list[StoredLayer]:
    """The layers in the local store, oldest first. One listing call: the
    SDK's images.list() inspects each image after listing them, and fails
    when another run removes one in between."""
    listed = client().api.images(filters={"label": f"{LABEL}.key"})
    size_of = {tag: image.get("Size", 0) for image in listed for tag in image.get("RepoTags") or []}
    rows = []
    for image in listed:
        labels = image.get("Labels") or {}
        key = labels.get(f"{LABEL}.key", "")
        if layer_tag(key) not in (image.get("RepoTags") or []):
            continue
        parent = labels.get(f"{LABEL}.parent", "")
        parent_size = size_of.get(layer_tag(parent), 0) if parent else 0
        rows.append(StoredLayer(
            key=key, layer=labels.get(f"{LABEL}.layer", "?"), parent=parent,
            target=labels.get(f"{LABEL}.target", ""), size=max(0, image.get("Size", 0) - parent_size),
            created=float(image.get("Created", 0)), image_id=image["Id"],
        ))
    return sorted(rows, key=lambda r: r.created)


def print_layers(rows: list[StoredLayer]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} layer(s) in the local store", title_justify="left")
    for col in ("key", "layer", "target", "size", "age", "parent"):
        table.add_column(col)
    now = time.time()
    for r in rows:
        table.add_row(r.key[:16], r.layer, r.target, f"{r.size / 2**20:.0f} MiB", age(now - r.created), r.parent[:16] or "-")
    Console().print(table)


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _descendants(keys: set[str], rows: list[StoredLayer]) -> set[str]:
    out = set(keys)
    grew = True
    while grew:
        grew = False
        for r in rows:
            if r.parent in out and r.key not in out:
                out.add(r.key)
                grew = True
    return out


def _untag(keys: set[str], rows: list[StoredLayer]) -> list[str]:
    """Remove children before parents so the engine can free the bytes."""
    depth = {r.key: 0 for r in rows}
    by_key = {r.key: r for r in rows}
    for r in rows:
        p, d = r.parent, 0
        while p in by_key:
            d += 1
            p = by_key[p].parent
        depth[r.key] = d
    removed = []
    for key in sorted(keys, key=lambda k: -depth.get(k, 0)):
        _untag_name(by_key[key])
        client().images.remove(layer_tag(key))
        attest.forget(key)
        removed.append(f"{by_key[key].layer} {key}")
    return removed


def _untag_name(row: StoredLayer) -> None:
    """A datastore image also carries the name the agent runs (postgres:15):
    that tag goes too while it still names this image, so the bytes are freed."""
    name = (client().images.get(row.image_id).labels or {}).get(f"{LABEL}.image")
    if not name:
        return
    try:
        if client().images.get(name).id == row.image_id:
            client().images.remove(name)
    except docker.errors.ImageNotFound:
        pass


def remove(prefixes: list[str]) -> list[str]:
    rows = list_layers()
    chosen: set[str] = set()
    for prefix in prefixes:
        chosen.add(match_key(prefix, [r.key for r in rows], "`factory layers ls`"))
    return _untag(_descendants(chosen, rows), rows)


def match_key(prefix: str, keys: list[str], listing: str) -> str:
    """The one key that starts with the prefix; `listing` says where to look."""
    hits = [k for k in keys if k.startswith(prefix)]
    if not hits:
        raise FactoryError(f"no layer key starts with '{prefix}'; see {listing}")
    if len(hits) > 1:
        raise FactoryError(f"'{prefix}' matches {len(hits)} layers; give more of the key")
    return hits[0]


def prune(older_than: str | None) -> list[str]:
    """Layers older than the age go, unless a kept layer builds on them."""
    limit = parse_age(older_than or "30d")
    rows = list_layers()
    return _untag(prunable({r.key: (r.parent, r.created) for r in rows}, limit, time.time()), rows)
