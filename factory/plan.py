"""Target -> the ordered layers that make it, each with its key and cache state.

Planning is pure apart from reading element trees and host inputs: it decides
which elements each layer runs, what environment it gets and what its key is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from factory import log
from factory.config import HOST_PATH_VARIABLES, SCOPED_VARIABLES, SEED_VARIABLES, Flags, Target, catalog, load_targets, validate
from factory.elements import Element, closure, content_hash, dib_version, search_path, tree_hash, with_dib_defaults
from factory.errors import FactoryError
from factory.keys import KeyInputs, layer_key
from factory.layers import LayerSpec, load_meta, load_stack
from factory.keyrings import keyring_path, spec as keyring_spec
from factory.mirrors import host_mirrors

LAYER_REPO = "factory-layer"


@dataclass
class PlannedLayer:
    spec: LayerSpec
    runs: dict[str, Element]  # elements whose phase hooks run in this layer
    visible: dict[str, Element]  # every element up to here (environment.d, bin/)
    env: dict[str, str]
    host_inputs: dict[str, str]
    packages: tuple[str, ...]
    inputs: KeyInputs
    key: str
    cached: bool | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tag(self) -> str:
        return f"{LAYER_REPO}:{self.key}"

    def to_json(self) -> dict:
        return {
            "layer": self.name,
            "key": self.key,
            "parent": self.inputs.parent,
            "phases": list(self.spec.phases),
            "elements": sorted(self.runs),
            "cached": self.cached,
            "image": self.tag,
        }


@dataclass
class Plan:
    target: Target
    builder_image: str
    layers: list[PlannedLayer] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"target": self.target.name, "builder": self.builder_image, "layers": [l.to_json() for l in self.layers]}


def checked_targets(flags: Flags) -> list[Target]:
    cat = catalog(search_path())
    return [validate(t, cat) for t in load_targets(flags)]


def layer_env(spec: LayerSpec, target: Target, mirrors: dict[str, str]) -> dict[str, str]:
    """The explicit environment a layer's elements receive.

    Seed settings reach only the layers that declare them (so a guest setting
    cannot invalidate the base layer); other --env values reach every layer."""
    full = {**mirrors, **target.element_env()}
    user_given = target.env_dict()
    env = {k: full[k] for k in spec.env if full.get(k)}
    for k, v in user_given.items():
        if k not in SCOPED_VARIABLES:
            env[k] = v
    env["ARCH"] = target.arch
    return dict(sorted(env.items()))


def host_inputs(env: dict[str, str], target: Target) -> dict[str, str]:
    """Values given to the build that name host files or folders, by content.

    Of the seed settings only those that name host paths count (GUEST_LOGDIR
    names a folder in the guest); any other --env value counts when it names
    an existing host path, as DIB elements read such values on the host."""
    given = target.env_dict()
    out: dict[str, str] = {}
    for name, value in env.items():
        if name in SEED_VARIABLES and name not in HOST_PATH_VARIABLES:
            continue
        if name not in given and name not in HOST_PATH_VARIABLES:
            continue
        if value.startswith("/") and value != "/" and os.path.exists(value):
            try:
                out[value] = content_hash(Path(value))
            except OSError as e:
                raise FactoryError(f"{name}={value}: cannot read it to hash its content ({e.strerror}); fix its permissions") from e
    return dict(sorted(out.items()))


def engine_hash() -> str:
    """The factory code that decides how a layer's hooks run."""
    from factory.engine import phases

    files = [phases.RUNNER_SOURCE, Path(phases.__file__), Path(phases.__file__).with_name("layer.py")]
    return content_hash_of_files(files)


def content_hash_of_files(files: list[Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def plan_stack(target: Target, builder_id: str, paths: list[Path] | None = None, layers_dir: Path | list[Path] | None = None) -> Plan:
    paths = paths or search_path()
    stack = load_stack(layers_dir)
    # Distro defaults: the host's mirrors, then _distros.yaml's env; the user's --env wins over both.
    mirrors = {**host_mirrors(target.distro), **{k: str(v) for k, v in (load_meta().get(target.distro, {}).get("env") or {}).items()}}
    keyring = None
    if not target.env_dict().get("DIB_APT_KEYRING"):
        keyring = keyring_path(target.distro)
        if keyring is not None:
            mirrors["DIB_APT_KEYRING"] = str(keyring)
    values = target.template_values()
    plan = Plan(target=target, builder_image=builder_id)
    wanted: list[str] = []
    below: dict[str, Element] = {}
    parent_key: str | None = None
    hashes: dict[Path, str] = {}
    for spec in stack:
        wanted += spec.element_names(values)
        if spec.extra_elements:
            wanted += list(target.elements)
        visible = closure(with_dib_defaults(wanted, target.arch), paths)
        runs = {n: e for n, e in visible.items() if n not in below}
        runs.update({n: visible[n] for n in spec.rerun if n in visible})
        env = layer_env(spec, target, mirrors)
        packages = tuple(target.packages) if spec.extra_packages else ()
        for e in visible.values():
            if e.path not in hashes:
                hashes[e.path] = tree_hash(e.path)
        files = host_inputs(env, target)
        if keyring and str(keyring) in env.values():
            files[str(keyring)] = f"pinned:{keyring_spec(target.distro)['sha256']}"
        inputs = KeyInputs(
            layer=spec.name,
            parent=parent_key,
            phases=spec.phases,
            elements={n: hashes[e.path] for n, e in sorted(visible.items())},
            new_elements=tuple(sorted(runs)),
            dib_version=dib_version(),
            engine=engine_hash(),
            builder_image=builder_id,
            # Host files enter by content, named by their variable: moving or
            # touching a file changes nothing, new bytes change the key.
            env={k: ("(host input)" if v in files else v) for k, v in log.fingerprint(env).items()},
            host_inputs={k: files[v] for k, v in sorted(env.items()) if v in files},
            packages=packages,
        )
        key = layer_key(inputs)
        plan.layers.append(PlannedLayer(spec, runs, visible, env, files, packages, inputs, key))
        below = visible
        parent_key = key
    return plan


def check_requirements(plan: Plan) -> None:
    """Settings elements declare they need, checked before anything is built."""
    from factory.elements import unmet_requirement

    problems = []
    for layer in plan.layers:
        for element in sorted(layer.runs.values(), key=lambda e: e.name):
            unmet = unmet_requirement(element, layer.env)
            if unmet:
                problems.append(f"{plan.target.name}: element {element.name} needs {unmet}; pass it with --env")
    if problems:
        raise FactoryError("\n".join(problems))


def mark_cache(plan: Plan) -> Plan:
    from factory.engine.docker import image_exists

    for layer in plan.layers:
        layer.cached = image_exists(layer.tag)
    return plan


def plan_with_cache(target: Target, builder_base: str | None = None) -> Plan:
    from factory.engine.builder import ensure_builder
    from factory.trust import host_trust

    from factory.containers import with_image

    builder = ensure_builder(host_trust(), base=builder_base, verbose=log.VERBOSE)
    return mark_cache(plan_stack(with_image(target), builder.id))


def print_plan(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plan.target.name} ({plan.target.arch})", title_justify="left")
    for col in ("layer", "key", "cached", "phases", "elements"):
        table.add_column(col)
    for layer in plan.layers:
        table.add_row(
            layer.name, layer.key[:16], "yes" if layer.cached else "no",
            " ".join(layer.spec.phases), " ".join(sorted(layer.runs)),
        )
    Console().print(table)
