"""Container mode, as planning sees it: which datastore image Trove's agent
runs, where it comes from, settled in the target before its keys are made.

Sources (`--datastore-image`): a registry reference, pulled through the
engine; `archive:FILE`, a `docker save` file; `distro`, built here from the
distro archive (factory/recipes.py). Default: the upstream reference when a
registry answers, else `distro`. What enters the datastore layer's key: the
reference, the archive's content, or the built image's key, so a tag that
moves upstream makes a new layer only when asked (`--refresh datastore`),
and a given archive always makes the same one. Pulling, saving and
recording images is engine work (engine/preload.py).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from factory import log
from factory.errors import UsageError
from factory.layers import load_container_images, load_meta
from factory.recipes import ImagePlan, apt_sources, load_recipe, plan_image
from factory.target import Target
from factory.target_settings import ARCHIVE_PREFIX, DISTRO_IMAGE as DISTRO, parse_image_source as parse_source

_log = log.get("containers")
__all__ = ["ARCHIVE_PREFIX", "DISTRO", "ImageSource", "choose_source", "distro_plan", "image_ref", "parse_source",
           "with_images"]


@dataclass(frozen=True)
class ImageSource:
    kind: str  # registry | archive | distro
    ref: str  # name:tag the agent runs
    archive: str | None = None  # archive: the docker-save file
    plan: ImagePlan | None = None  # distro: what to build

    @property
    def label(self) -> str:
        """DATASTORE_IMAGE_SOURCE: what the datastore layer's key records."""
        return f"{DISTRO}:{self.plan.key}" if self.plan else self.kind


def image_ref(target: Target, datastore: str) -> str:
    """name:tag the agent will start: DATASTORE_IMAGE (one datastore), else
    the datastore's image tagged with --datastore-version (or the default)."""
    given = target.env_dict().get("DATASTORE_IMAGE")
    if given and len(target.datastores) == 1:
        return given
    known = load_container_images().get(datastore)
    if not known:
        raise UsageError(f"no container image known for {datastore}; set DATASTORE_IMAGE=NAME:TAG (--env)")
    return f"{known['image']}:{target.datastore_version or known['version']}"


def distro_plan(target: Target, datastore: str) -> ImagePlan:
    """The datastore's image built from the target's own distro archive and release."""
    from factory.keyrings import dib_default_mirror, spec
    from factory.mirrors import host_mirrors

    recipe = load_recipe(datastore, target.release or "")
    if target.datastore_version and target.datastore_version != recipe.version:
        raise UsageError(f"{target.release}'s archive ships {datastore} {recipe.version}, not "
                         f"{target.datastore_version}; drop --datastore-version or give --datastore-image REF")
    user = target.env_dict()
    mirrors = {**host_mirrors(target.distro), **{k: v for k, v in user.items() if k.endswith("_MIRROR")}}
    if not mirrors.get("DIB_DISTRIBUTION_MIRROR"):
        element = (spec(target.distro) or {}).get("mirror_element") or f"{target.distro}-minimal"
        mirrors["DIB_DISTRIBUTION_MIRROR"] = dib_default_mirror(element, target.arch)
    templates = load_meta().get(target.distro, {}).get("image_sources") or []
    sources = apt_sources(templates, {k: v for k, v in mirrors.items() if v}, target.release or "")
    keyring = ""
    if spec(target.distro) and not user.get("DIB_APT_KEYRING"):
        keyring = spec(target.distro)["sha256"]
    return plan_image(recipe, target.distro, target.release or "", target.arch, sources, keyring)


def choose_source(target: Target, datastore: str) -> ImageSource:
    kind, value = parse_source(target.datastore_image)
    env = target.env_dict()
    if kind == "registry":
        return ImageSource("registry", value)
    if kind == "archive" or (not kind and env.get("DATASTORE_IMAGE_ARCHIVE")):
        if len(target.datastores) != 1:
            raise UsageError("DATASTORE_IMAGE_ARCHIVE holds one datastore's image; give it with one --datastore")
        path = value or env["DATASTORE_IMAGE_ARCHIVE"]
        check_archive(Path(path))
        return ImageSource("archive", image_ref(target, datastore), archive=str(Path(path).resolve()))
    if kind == DISTRO:
        plan = distro_plan(target, datastore)
        return ImageSource(DISTRO, plan.recipe.ref, plan=plan)
    from factory.engine.docker import registry_answers

    upstream = image_ref(target, datastore)
    if registry_answers(upstream):
        return ImageSource("registry", upstream)
    try:
        plan = distro_plan(target, datastore)
    except UsageError as e:  # no recipe for this distro or release: the layer pulls it when built, as before
        _log.warning(f"no container registry answers for {upstream}, and it cannot be built here ({e}); "
                     "building the datastore layer pulls it")
        return ImageSource("registry", upstream)
    _log.warning(f"no container registry answers for {upstream}; building {plan.recipe.ref} from the "
                 f"{target.distro} {target.release} archive instead (--datastore-image distro)")
    return ImageSource(DISTRO, plan.recipe.ref, plan=plan)


def with_images(target: Target) -> tuple[Target, list[ImageSource]]:
    """The target with its datastores' images settled (container mode only),
    one word per datastore: DATASTORE_IMAGE (the tags the agent runs),
    DATASTORE_IMAGE_SOURCE and, for an archive, DATASTORE_IMAGE_ARCHIVE (in
    the key by content). A registry image is pulled only when its layer is
    built (like packages, a tag moving upstream rebuilds nothing until
    `--refresh datastore`). No datastore: the generic guest, no image."""
    if target.mode != "container":
        return target, []
    sources = [choose_source(target, d) for d in target.datastores]
    env = target.env_dict()
    env["DATASTORE_IMAGE"] = " ".join(s.ref for s in sources)
    env["DATASTORE_IMAGE_SOURCE"] = " ".join(s.label for s in sources)
    archives = [s.archive for s in sources if s.archive]
    if archives:
        env["DATASTORE_IMAGE_ARCHIVE"] = archives[0]
    return replace(target, env=tuple(sorted(env.items()))), sources


def check_archive(path: Path) -> None:
    try:
        with tarfile.open(path) as tar:
            tar.getmember("manifest.json")
    except (tarfile.TarError, KeyError, OSError) as e:
        raise UsageError(f"datastore image archive {path} is not a docker-save archive (no manifest.json); "
                         "make one with `docker save NAME:TAG -o FILE.tar`") from e
