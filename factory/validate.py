"""Validation of a whole target before anything is built: every problem at
once, one line each, saying what to pass instead."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, TypeVar

from factory import agent, hostchecks
from factory.catalog import Catalog
from factory.errors import FactoryError, UsageError
from factory.target import HOST_PATH_VARIABLES, Target
from factory.target_settings import BY_NAME, COMPRESSIONS, ENV_NAME, SETTINGS

T = TypeVar("T")


def validate(target: Target, cat: Catalog) -> Target:
    """A complete, checked target (release filled in); one error line per problem."""
    problems, complete = target_problems(target, cat)
    if problems:
        raise UsageError("\n".join(problems))
    return complete


def target_problems(target: Target, cat: Catalog) -> tuple[list[str], Target]:
    """Every problem of a target, one line each, and the target with its
    release filled in."""
    problems: list[str] = []
    if target.distro not in cat.distros:
        problems.append(f"unknown distro '{target.distro}'; valid distros: {', '.join(cat.distros) or '(none found)'}")
    else:
        stores = cat.distros[target.distro]
        for datastore in target.datastores:
            if datastore not in stores:
                problems.append(
                    f"unknown datastore '{datastore}' for {target.distro}; valid datastores: {', '.join(stores) or '(none)'}"
                )
    release = target.release or cat.default_releases.get(target.distro)
    if target.distro in cat.distros and not release:
        problems.append(f"no release given for {target.distro}; pass --release")
    known = cat.releases.get(target.distro)
    if release and known and release not in known:
        problems.append(f"unknown release '{release}' for {target.distro}; valid releases: {', '.join(known)} "
                        f"(layers/_distros.yaml lists them)")
    for setting in SETTINGS:
        problem = setting.check(getattr(target, setting.name)) if setting.check else None
        if problem:
            problems.append(problem)
    source = None if BY_NAME["agent_source"].check(target.agent_source) else target.agent
    problems += _datastore_count_problems(target, source)
    problems += _image_source_problems(target, source, release)
    if source and source.kind == "runtime":
        missing = [v for v in agent.RUNTIME_SETTINGS if not target.env_dict().get(v)]
        if missing:
            problems.append(f"--agent-source runtime needs {', '.join(missing)} (the guest copies the agent from the controller at boot)")
    if source and source.kind == "path" and not os.path.isdir(source.location):
        problems.append(f"--agent-source path:{source.location}: no such folder on this host; point it at a Trove checkout")
    problems += _env_problems(target.env_dict(), source)
    problems += _element_layer_problems(target)
    problems += hostchecks.output_problems(target.output)
    return problems, replace(target, release=release)


def buildable(target: Target, cat: Catalog) -> bool:
    """Whether the target names a stack the elements can be found for."""
    stores = cat.distros.get(target.distro)
    if stores is None or BY_NAME["agent_source"].check(target.agent_source) is not None:
        return False
    if len(target.datastores) != 1 and (BY_NAME["datastore_mode"].check(target.datastore_mode) or target.mode != "container"):
        return False
    return all(d in stores for d in target.datastores)


def _datastore_count_problems(target: Target, source) -> list[str]:
    """A native image carries one datastore; container mode also none (the
    generic guest) or several, and then no setting that names one image."""
    if not source or BY_NAME["datastore_mode"].check(target.datastore_mode) or len(target.datastores) == 1:
        return []
    problems = []
    if target.mode == "native":
        problems.append("a native image carries one datastore; pass one --datastore "
                        "(several, or none, need container mode: a current agent)")
    for flag, value in (("--datastore-version", target.datastore_version), ("--datastore-image", target.datastore_image)):
        if value:
            problems.append(f"{flag} names one datastore's image; give it with one --datastore")
    return problems


def _image_source_problems(target: Target, source, release: str | None) -> list[str]:
    """Container mode's image sources, as far as they can be checked without
    the engine: archive:FILE (or DATASTORE_IMAGE_ARCHIVE) a docker-save file
    on this host; distro, a recipe for each datastore and this release (the
    form of --datastore-image is the setting's own check)."""
    from factory.containers import check_archive
    from factory.recipes import load_recipe
    from factory.target_settings import DISTRO_IMAGE, parse_image_source

    if (not source or BY_NAME["datastore_mode"].check(target.datastore_mode) or target.mode != "container"
            or BY_NAME["datastore_image"].check(target.datastore_image)):
        return []
    kind, value = parse_image_source(target.datastore_image)
    from_env = not kind and bool(target.env_dict().get("DATASTORE_IMAGE_ARCHIVE"))
    if from_env:
        kind, value = "archive", target.env_dict()["DATASTORE_IMAGE_ARCHIVE"]
    problems: list[str] = []
    if kind == "archive":
        found = hostchecks.input_problems("--datastore-image archive:", value)
        if not from_env:  # the variable's own path check is the environment's (_env_problems)
            problems += found
        if found:
            pass
        elif not os.path.isfile(value):
            problems.append(f"datastore image archive {value} is a folder; name the file `docker save NAME:TAG -o FILE.tar` wrote")
        else:
            try:
                check_archive(Path(value))
            except FactoryError as e:
                problems.append(str(e))
    elif kind == DISTRO_IMAGE and release:
        for datastore in target.datastores:
            try:
                recipe = load_recipe(datastore, release)
            except FactoryError as e:
                problems.append(str(e))
                continue
            if target.datastore_version and target.datastore_version != recipe.version:
                problems.append(f"{release}'s archive ships {datastore} {recipe.version}, not {target.datastore_version}; "
                                "drop --datastore-version or give --datastore-image REF")
    return problems


def all_at_once(*checks: Callable[[], T]) -> list[T]:
    """Each check's result; or, when any fails, one UsageError holding every
    failure's lines (a check that fails for another reason than a value,
    e.g. a host that lacks a tool, still stops the run with its own kind)."""
    results, problems = [], []
    for check in checks:
        try:
            results.append(check())
        except UsageError as e:
            problems.append(str(e))
            results.append(None)
        except FactoryError as e:
            if type(e) is not FactoryError:
                raise
            problems.append(str(e))
            results.append(None)
    if problems:
        raise UsageError("\n".join(problems))
    return results


def check_build_options(compression: str, refresh: list[str]) -> None:
    """What `build` takes besides the target, checked before the first layer."""
    from factory.layers import load_stack
    from factory.recipes import IMAGE_LAYER

    problems = []
    if compression not in COMPRESSIONS:
        problems.append(f"--compression '{compression}' is not known; use one of {', '.join(COMPRESSIONS)}")
    # The datastore image built from the distro archive is kept as a layer too.
    layers = [IMAGE_LAYER] + [spec.name for spec in load_stack()]
    unknown = sorted(set(refresh) - set(layers))
    if unknown:
        problems.append(f"--refresh {', '.join(unknown)}: no such layer; layers are {', '.join(layers)}")
    if problems:
        raise UsageError("\n".join(problems))


def _env_problems(env: dict[str, str], source) -> list[str]:
    problems = []
    for key in env:
        if not ENV_NAME.match(key):
            problems.append(f"environment name '{key}' is not a valid variable name")
        if key.startswith("ESCAPED_"):
            problems.append(f"{key} is derived from {key[8:]}; set {key[8:]} instead")
    if env.get("CONTROLLER_IP"):
        try:
            ipaddress.ip_address(env["CONTROLLER_IP"])
        except ValueError:
            problems.append(f"CONTROLLER_IP '{env['CONTROLLER_IP']}' is not an IP address")
    # In development mode PATH_TROVE and SSH_DIR name the controller's side.
    on_host = [v for v in HOST_PATH_VARIABLES if not (source and source.kind == "runtime" and v == "PATH_TROVE")]
    for var in on_host:
        if env.get(var):
            problems += hostchecks.input_problems(var, env[var], folder_must_hold_files=(var == "DATASTORE_PKG_LOCATION"))
    return problems


def _element_layer_problems(target: Target) -> list[str]:
    from factory.layers import load_stack

    layers = [spec.name for spec in load_stack()]
    return [f"--element {layer}:{name}: no layer '{layer}'; layers are {', '.join(layers)}"
            for layer, name in target.extra_elements() if layer is not None and layer not in layers]


def check_layer_option(layer: str | None, verify: bool, publish: list[str]) -> None:
    """`build --layer`: a key prefix, and a job that makes one layer only."""
    if layer is None:
        return
    problems = []
    if not re.fullmatch(r"[0-9a-f]{4,64}", layer):
        problems.append(f"--layer '{layer}' is not a layer key (or its first hex digits); `factory plan` lists the keys")
    if verify or publish:
        problems.append("--layer builds one layer and assembles nothing: --verify and --publish go with a target's build")
    if problems:
        raise UsageError("\n".join(problems))
