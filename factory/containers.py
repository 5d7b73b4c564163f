"""Container mode: the datastore image Trove's agent runs, and the local
archive of it that the datastore layer preloads into the guest's engine.

The archive is what enters the layer key (by content), so a tag that moves
upstream makes a new layer, and a given archive always makes the same one.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from factory import log
from factory.config import Target
from factory.errors import FactoryError
from factory.layers import load_container_images
from factory.plan import PlannedLayer
from factory.settings import state_dir

_log = log.get("containers")


def image_ref(target: Target) -> str:
    """name:tag the agent will start: DATASTORE_IMAGE, else the datastore's
    image tagged with --datastore-version (or the default version)."""
    given = target.env_dict().get("DATASTORE_IMAGE")
    if given:
        return given
    known = load_container_images().get(target.datastore)
    if not known:
        raise FactoryError(f"no container image known for {target.datastore}; set DATASTORE_IMAGE=NAME:TAG (--env)")
    return f"{known['image']}:{target.datastore_version or known['version']}"


def with_image(target: Target) -> Target:
    """The target with DATASTORE_IMAGE settled (container mode only). A given
    archive enters the key by content; without one the reference does, and
    the image is pulled only when its layer is built (like packages, a tag
    moving upstream rebuilds nothing until `--refresh datastore`)."""
    if target.mode != "container":
        return target
    env = target.env_dict()
    env["DATASTORE_IMAGE"] = image_ref(target)
    if env.get("DATASTORE_IMAGE_ARCHIVE"):
        _check_archive(Path(env["DATASTORE_IMAGE_ARCHIVE"]))
    return replace(target, env=tuple(sorted(env.items())))


def staged(layer: PlannedLayer) -> PlannedLayer:
    """A layer about to be built that preloads an image nobody saved: pull
    it, save it, and hand the archive to the elements (the key stays)."""
    ref = layer.env.get("DATASTORE_IMAGE")
    if not ref or layer.env.get("DATASTORE_IMAGE_ARCHIVE"):
        return layer
    archive = str(_pull_and_save(ref))
    return replace(layer, env={**layer.env, "DATASTORE_IMAGE_ARCHIVE": archive},
                   host_inputs={**layer.host_inputs, archive: f"pulled:{ref}"})


def _check_archive(path: Path) -> None:
    import tarfile

    try:
        with tarfile.open(path) as tar:
            tar.getmember("manifest.json")
    except (tarfile.TarError, KeyError, OSError) as e:
        raise FactoryError(f"DATASTORE_IMAGE_ARCHIVE {path} is not a docker-save archive (no manifest.json); "
                           "make one with `docker save NAME:TAG -o FILE.tar`") from e


def _archive_path(ref: str) -> Path:
    return state_dir() / "images" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", ref) + ".tar")


def _pull_and_save(ref: str) -> Path:
    import docker

    from factory.engine.docker import client

    dest = _archive_path(ref)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _log.info("pulling the datastore image for preloading", image=ref)
    try:
        image = client().images.pull(ref)
    except docker.errors.APIError as e:
        reason = str(getattr(e, "explanation", "") or e).splitlines()[0]
        raise FactoryError(
            f"cannot pull {ref} ({reason}); give a saved image with --env DATASTORE_IMAGE_ARCHIVE=FILE.tar "
            "(docker save), or make its registry reachable"
        ) from e
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".saving-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in image.save(named=True):
                f.write(chunk)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
