"""Container mode, as the engine does it: whether a registry answers for an
image; a layer about to be built that preloads datastore images nobody saved
gets each pulled (or, built here from the distro archive, taken from the
engine) and saved (`docker save`) to an archive its elements write into the
guest's engine; and what the manifest records of each image."""

from __future__ import annotations

import json
import os
import re
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from factory import log
from factory.containers import DISTRO, ImageSource
from factory.errors import Unavailable
from factory.plan import PlannedLayer
from factory.settings import state_dir

_log = log.get("containers")


@contextmanager
def staging(layer: PlannedLayer) -> Iterator[PlannedLayer]:
    """A layer about to be built that preloads images nobody saved: pull
    each (or take the one built here), save it, and hand the archives to the
    elements, one word per image (the key stays). The archive of an image
    built here is dropped afterwards: the engine keeps the image itself."""
    refs = layer.env.get("DATASTORE_IMAGE", "").split()
    if not refs or layer.env.get("DATASTORE_IMAGE_ARCHIVE"):
        yield layer
        return
    archives: dict[str, str] = {}
    try:
        for ref, label in zip(refs, layer.env["DATASTORE_IMAGE_SOURCE"].split()):
            built = label.startswith(f"{DISTRO}:")
            origin = label if built else f"pulled:{ref}"
            archives[str(_save_built(ref, label.split(":", 1)[1]) if built else _pull_and_save(ref))] = origin
        yield replace(layer, env={**layer.env, "DATASTORE_IMAGE_ARCHIVE": " ".join(archives)},
                      host_inputs={**layer.host_inputs, **archives})
    finally:
        for path, origin in archives.items():
            if origin.startswith(f"{DISTRO}:"):
                Path(path).unlink(missing_ok=True)


def record(source: ImageSource) -> dict:
    """What the manifest and Glance say about the preloaded image."""
    import docker

    from factory.engine.docker import client

    out = {"image": source.ref, "source": source.kind}
    if source.plan:
        out["key"] = source.plan.key
    try:
        image = client().images.get(source.ref)
        out["id"] = image.id
        if image.attrs.get("RepoDigests"):
            out["digest"] = image.attrs["RepoDigests"][0].rpartition("@")[2]
    except docker.errors.ImageNotFound:
        if source.archive:
            out["id"] = _archive_image_id(Path(source.archive))
    return out


def _archive_image_id(path: Path) -> str:
    """The image id (its config's digest) a docker-save archive holds."""
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return "sha256:" + Path(manifest[0]["Config"]).name.removesuffix(".json")


def _archive_path(name: str) -> Path:
    return state_dir() / "images" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".tar")


def _pull_and_save(ref: str) -> Path:
    import docker

    from factory.engine.docker import client

    _log.info("pulling the datastore image for preloading", image=ref)
    try:
        client().images.pull(ref)
    except docker.errors.APIError as e:
        reason = str(getattr(e, "explanation", "") or e).splitlines()[0]
        raise Unavailable(
            f"cannot pull {ref} ({reason}); give --datastore-image archive:FILE.tar (docker save) or "
            "--datastore-image distro (built from the distro archive), or make its registry reachable"
        ) from e
    return _save(ref, _archive_path(f"pulled:{ref}"))


def _save_built(ref: str, key: str) -> Path:
    """Save the image built here for this layer. Its name (`mariadb:10.11`)
    may also be that of another distro's image built here, so the name is
    set again from the key just before the save, and no other build moves
    it in between."""
    from factory.engine.docker import client
    from factory.locks import host_lock
    from factory.stored import layer_tag

    with host_lock(f"image-name-{re.sub(r'[^A-Za-z0-9_.-]+', '_', ref)}", "another build is naming this image; waiting",
                   image=ref):
        name, _, version = ref.rpartition(":")
        client().images.get(layer_tag(key)).tag(name, version)
        return _save(ref, _archive_path(f"{DISTRO}:{key}"))


def _save(ref: str, dest: Path) -> Path:
    """`docker save` of the image under the name the agent runs."""
    from factory.engine.docker import client

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".saving-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in client().api.get_image(ref):
                f.write(chunk)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
