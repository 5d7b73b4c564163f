"""Target -> the ordered layers that make it, each with its key and cache state.

Planning is pure apart from reading element trees and host inputs: it decides
which elements each layer runs, what environment it gets and what its key is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from factory import declared, environment, log
from factory.catalog import catalog
from factory.config import load_targets
from factory.target import HOST_PATH_VARIABLES, SCOPED_VARIABLES, SEED_VARIABLES, Flags, Target
from factory.validate import buildable, target_problems
from factory.elements import Element, closure, dib_version, search_path, with_dib_defaults
from factory.declared import ACCEPTS_FILE
from factory.errors import FactoryError, UsageError
from factory.hashing import content_hash, files_hash, tree_hash
from factory.keys import KeyInputs, layer_key
from factory.layers import LayerSpec, load_meta, load_stack
from factory.keyrings import keyring_path, spec as keyring_spec
from factory.mirrors import host_mirrors
from factory.stored import layer_tag


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
    target: Target
    cached: bool | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tag(self) -> str:
        return layer_tag(self.key)

    def to_json(self) -> dict:
        return {
            "layer": self.name,
            "key": self.key,
            "parent": self.inputs.parent,
            "phases": list(self.spec.phases),
            "elements": sorted(self.runs),
            "cached": self.cached,
            "image": self.tag,
            "env": {k: {"value": v, "source": self.source(k)} for k, v in log.redact(self.env).items()},
        }

    def source(self, name: str) -> str:
        """Where the value this layer receives as `name` came from."""
        return environment.origin(name, self.target)


@dataclass
class Plan:
    target: Target
    builder_image: str
    layers: list[PlannedLayer] = field(default_factory=list)
    # Container mode: the preloaded images (planned: image, source, key of one
    # built here; built: engine/preload.record's).
    images: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"target": self.target.name, "builder": self.builder_image, "layers": [l.to_json() for l in self.layers],
                "datastore_images": self.images}


def checked_targets(flags: Flags, environ: dict[str, str] | None = None) -> list[Target]:
    """The targets, every problem of every target reported at once; each
    keeps only the exported variables one of its layers reads, and the
    others are named in one warning line."""
    paths = search_path()
    cat = catalog(paths)
    checked, problems, unread = [], [], set()
    environ = dict(os.environ) if environ is None else environ
    for target in load_targets(flags, environ):
        found, target = target_problems(target, cat)
        if buildable(target, cat):
            try:
                found += declared.problems(target_elements(target, paths).values(), target)
            except FactoryError as e:  # an --element that is nowhere
                found.append(str(e))
        problems += found
        if not found:
            target, dropped = settle_environment(target, paths)
            unread |= dropped
        checked.append(target)
    if problems:
        raise UsageError("\n".join(problems))
    if unread:
        log.get("env").warning(f"exported but read by no layer, so not used: {', '.join(sorted(unread))}")
    ignored = environment.driver_values(environ, "ignored")
    if ignored:
        log.get("env").info(f"no meaning for layered builds, not used: {', '.join(sorted(ignored))}")
    return checked


def select(targets: list[Target], names: list[str]) -> list[Target]:
    """The targets named (--target NAME, as `factory plan` lists them); all when none is."""
    if not names:
        return targets
    unknown = sorted(set(names) - {t.name for t in targets})
    if unknown:
        raise UsageError(f"--target {', '.join(unknown)}: no such target; the targets are {', '.join(t.name for t in targets)}")
    return [t for t in targets if t.name in names]


def target_elements(target: Target, paths: list[Path]) -> dict[str, Element]:
    """Every element the target's layers run (their whole closure)."""
    wanted: list[str] = []
    for spec in load_stack():
        wanted += spec.element_names(target.template_values())
    wanted += [name for _layer, name in target.extra_elements()]
    return closure(with_dib_defaults(wanted, target.arch), paths)


def stack_elements(target: Target, paths: list[Path], stack: list[LayerSpec]):
    """(layer, every element it sees, the elements whose hooks it runs), bottom up."""
    values = target.template_values()
    wanted: list[str] = []
    below: dict[str, Element] = {}
    for spec in stack:
        wanted += spec.element_names(values)
        wanted += [name for layer, name in target.extra_elements() if layer == spec.name or (layer is None and spec.extra_elements)]
        visible = closure(with_dib_defaults(wanted, target.arch), paths)
        runs = {n: e for n, e in visible.items() if n not in below}
        runs.update({n: visible[n] for n in spec.rerun if n in visible})
        yield spec, visible, runs
        below = visible


def settle_environment(target: Target, paths: list[Path]) -> tuple[Target, set[str]]:
    """The target without the exported variables none of its layers reads
    (they would only move keys), and their names."""
    exported = {k for k, v in target.origins if k.startswith("env:") and v == environment.ENV}
    if not exported:
        return target, set()
    read = {n for n, kind in environment.driver_variables().items() if kind == "env"}
    for spec, visible, runs in stack_elements(target, paths, load_stack()):
        read |= environment.reads(spec, runs, visible)
    unread = {k[4:] for k in exported} - read
    env = tuple((k, v) for k, v in target.env if k not in unread)
    origins = tuple((k, v) for k, v in target.origins if k[4:] not in unread or not k.startswith("env:"))
    return replace(target, env=env, origins=origins), unread


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
    """What decides how a layer's hooks run: the phase runner script, the
    tidy-up after them and the module that lays out its hooks and
    environment (not the modules that start containers)."""
    from factory.engine import phases

    return files_hash([phases.RUNNER_SOURCE, phases.TIDY_SOURCE, Path(phases.__file__)])


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
    plan = Plan(target=target, builder_image=builder_id)
    parent_key: str | None = None
    hashes: dict[Path, str] = {}
    for spec, visible, runs in stack_elements(target, paths, stack):
        env = layer_env(spec, target, mirrors)
        packages = tuple(target.packages) if spec.extra_packages else ()
        for e in visible.values():
            if e.path not in hashes:
                # An element's declaration of the values it accepts is read
                # by the factory before building, never by a hook: no key.
                hashes[e.path] = tree_hash(e.path, leave_out=frozenset({ACCEPTS_FILE}))
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
        plan.layers.append(PlannedLayer(spec, runs, visible, env, files, packages, inputs, key, target))
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
                problems.append(f"{plan.target.name}: element {element.name} needs {unmet}; export it or pass it with --env")
    if problems:
        raise FactoryError("\n".join(problems))


def print_plan(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{plan.target.name} ({plan.target.arch})", title_justify="left")
    for col in ("layer", "key", "cached", "phases", "elements"):
        table.add_column(col)
    from factory.recipes import IMAGE_LAYER

    for image in plan.images:  # built from the distro archive before the layers, kept as one
        if image.get("key"):
            table.add_row(IMAGE_LAYER, image["key"][:16], "yes" if image.get("cached") else "no", "mmdebstrap",
                          image["image"])
    for layer in plan.layers:
        table.add_row(
            layer.name, layer.key[:16], "yes" if layer.cached else "no",
            " ".join(layer.spec.phases), " ".join(sorted(layer.runs)),
        )
    Console().print(table)
    if plan.images:
        Console().print("datastore images preloaded: " + ", ".join(f"{i['image']} ({i['source']})" for i in plan.images))
    print_sources(plan)


def print_sources(plan: Plan) -> None:
    """Every setting each layer receives, and where it came from."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="settings each layer receives (source: flag, --env, env, file, default, derived)",
                  title_justify="left")
    for col in ("layer", "variable", "value", "source"):
        table.add_column(col)
    for layer in plan.layers:
        for name, value in log.redact(layer.env).items():
            table.add_row(layer.name, name, value, layer.source(name))
    Console().print(table)
