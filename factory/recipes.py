"""Datastore container images built from the distro archive: the recipe of
each (containers/datastores/<datastore>/) and the key of the image it makes.

Pure apart from reading recipe files: the key is a function of the recipe
trees, the distro, release and arch, the archive sources and the package list,
so an image is found again by its key alone, like a layer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from factory import CONTAINERS_DIR
from factory.hashing import tree_hash
from factory.errors import FactoryError, UsageError
from factory.layers import render

DATASTORES_DIR = CONTAINERS_DIR / "datastores"
IMAGE_LAYER = "datastore-image"  # its name in the layer store (`factory layers ls`)
IMAGE_KEY_SCHEMA = 1


@dataclass(frozen=True)
class Recipe:
    datastore: str
    image: str  # Trove's docker_image for the datastore
    version: str  # what the release's archive ships; the image's tag
    packages: tuple[str, ...]
    config: dict  # image config (Entrypoint, Cmd, Env, ...), as the engine's API names it
    folders: tuple[Path, ...]  # the recipe's own folder last; each may hold setup.sh and bin/

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.version}"


@dataclass(frozen=True)
class ImageInputs:
    datastore: str
    distro: str
    release: str
    arch: str
    recipe: dict[str, str]  # folder name -> tree hash
    sources: tuple[str, ...]  # apt source lines the root is made from
    keyring: str  # sha256 of the archive keyring handed to mmdebstrap ("" = the host's)
    packages: tuple[str, ...]

    def canonical(self) -> str:
        data = {**asdict(self), "schema": IMAGE_KEY_SCHEMA, "sources": list(self.sources), "packages": list(self.packages)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ImagePlan:
    recipe: Recipe
    inputs: ImageInputs
    key: str

    @property
    def target(self) -> str:
        return f"{self.inputs.distro}-{self.inputs.release}-{self.recipe.datastore}"


def image_key(inputs: ImageInputs) -> str:
    return hashlib.sha256(inputs.canonical().encode()).hexdigest()


def known(root: Path = DATASTORES_DIR) -> list[str]:
    """Datastores with a recipe."""
    return sorted(p.name for p in root.iterdir() if (p / "recipe.yaml").is_file()) if root.is_dir() else []


def _read(folder: Path) -> dict:
    try:
        data = yaml.safe_load((folder / "recipe.yaml").read_text()) or {}
    except yaml.YAMLError as e:
        raise FactoryError(f"{folder}/recipe.yaml: not valid YAML: {str(e).splitlines()[0]}") from e
    missing = [k for k in ("image", "versions", "packages", "config") if k not in data]
    if missing:
        raise FactoryError(f"{folder}/recipe.yaml: missing {', '.join(missing)}")
    return data


def load_recipe(datastore: str, release: str, root: Path = DATASTORES_DIR) -> Recipe:
    folder = root / datastore
    if not (folder / "recipe.yaml").is_file():
        raise UsageError(f"no recipe builds a {datastore} image from the distro archive; "
                           f"recipes exist for {', '.join(known(root)) or '(none)'}; give --datastore-image REF or archive:FILE")
    data = _read(folder)
    versions = {str(k): str(v) for k, v in data["versions"].items()}
    if release not in versions:
        raise UsageError(f"{release}'s archive ships no {datastore} the recipe knows (it knows {', '.join(versions)}); "
                           "give --datastore-image REF or archive:FILE")
    values = {"version": versions[release], "release": release}
    includes = tuple(root / str(name) for name in data.get("include") or ())
    for inc in includes:
        if not inc.is_dir():
            raise FactoryError(f"{folder}/recipe.yaml includes {inc.name}, which is not a folder beside it")
    return Recipe(
        datastore=datastore,
        image=str(data["image"]),
        version=values["version"],
        packages=tuple(render(str(p), values) for p in data["packages"]),
        config=_render_config(data["config"], values),
        folders=(*includes, folder),
    )


def _render_config(config, values: dict[str, str]):
    if isinstance(config, str):
        return render(config, values)
    if isinstance(config, list):
        return [_render_config(c, values) for c in config]
    if isinstance(config, dict):
        return {str(k): _render_config(v, values) for k, v in config.items()}
    return config


def apt_sources(templates: list[str], mirrors: dict[str, str], release: str) -> tuple[str, ...]:
    """The distro's source templates (layers/_distros.yaml `image_sources`)
    filled in; a line whose mirror is unknown is left out."""
    out = []
    for line in templates:
        try:
            out.append(line.format(release=release, **mirrors))
        except KeyError:
            continue
    return tuple(out)


def plan_image(recipe: Recipe, distro: str, release: str, arch: str, sources: tuple[str, ...], keyring: str = "") -> ImagePlan:
    if not sources:
        raise UsageError(f"no {distro} archive mirror known to build the {recipe.datastore} image from; set DIB_DISTRIBUTION_MIRROR")
    inputs = ImageInputs(
        datastore=recipe.datastore, distro=distro, release=release, arch=arch,
        recipe={f.name: tree_hash(f) for f in recipe.folders},
        sources=sources, keyring=keyring, packages=recipe.packages,
    )
    return ImagePlan(recipe=recipe, inputs=inputs, key=image_key(inputs))
