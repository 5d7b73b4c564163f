"""`factory build`: missing layers bottom-up, cached ones reused, then the output."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from factory import agent, attest, compat, containers, gc, log, progress
from factory.assemble import DEFAULT_COMPRESSION, assemble
from factory.target import Target
from factory.elements import search_path
from factory.engine import layer as engine
from factory.engine import preload
from factory.engine.builder import ensure_builder
from factory.engine.docker import client, image_exists
from factory.errors import UsageError
from factory.target_settings import size_floor_gib, size_in_gib
from factory.keyrings import ensure_keyring
from factory.layers import load_meta
from factory.locks import host_lock
from factory.plan import Plan, PlannedLayer, check_requirements, plan_stack
from factory.preflight import check_mirror
from factory.recipes import IMAGE_LAYER, ImagePlan
from factory.settings import state_dir
from factory.store.cache import CacheSettings, RemoteCache
from factory.stored import layer_tag
from factory.trust import host_trust

_log = log.get("build")


def _layer_lock(key: str):
    """One build per layer key on this host; a second build waits, then reuses."""
    return host_lock(key, "another build is making this layer; waiting for it", key=key[:16])


def _package_cache_lock(distro: str):
    """The shared package cache takes one package manager at a time (apt
    refuses a locked cache rather than wait), so layers that use it are
    built one after another on this host."""
    return host_lock(f"package-cache-{distro}", "another build is using the package cache; waiting for it", distro=distro)


def _cache_dir() -> Path:
    path = state_dir() / "dib-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_one(plan: Plan, layer: PlannedLayer, parent: str | None, verbose: bool,
              commit_as: tuple[str, str] | None = None) -> engine.LayerResult:
    """One layer of the plan on its parent image, committed as the layer (or under `commit_as`)."""
    # DIB's own layout for its shared apt cache: $DIB_IMAGE_CACHE/apt/<distro>.
    inside = load_meta().get(plan.target.distro, {}).get("package_cache")
    package_cache = (_cache_dir() / "apt" / plan.target.distro, inside) if inside else None
    with _package_cache_lock(plan.target.distro), preload.staging(layer) as staged:
        return engine.build_layer(
            staged, parent, builder_image=plan.builder_image, trust=host_trust(),
            element_paths=search_path(), workroot=state_dir() / "work", logdir=state_dir() / "logs",
            target_name=plan.target.name, verbose=verbose, cache_dir=_cache_dir(), package_cache=package_cache,
            commit_as=commit_as,
        )


def build_layers(plan: Plan, refresh: list[str], verbose: bool, cache: RemoteCache) -> list[dict]:
    summary: list[dict] = []
    parent: str | None = None
    forcing = False
    for layer in plan.layers:
        forcing = forcing or layer.name in refresh
        started = time.monotonic()
        if image_exists(layer.tag) and not forcing:
            _log.info("layer cached", layer=layer.name, key=layer.key[:16])
            summary.append({"layer": layer.name, "key": layer.key, "state": "cached", "seconds": time.monotonic() - started})
            progress.event(layer.name, layer.key, "layer", "cached", target=plan.target.name)
            attest.ensure(layer.key, cache.settings.signing_key)
            parent = layer.tag
            continue
        with _layer_lock(layer.key):
            if image_exists(layer.tag) and not forcing:
                _log.info("layer cached", layer=layer.name, key=layer.key[:16], built_by="another run")
                summary.append({"layer": layer.name, "key": layer.key, "state": "cached (built by another run)", "seconds": time.monotonic() - started})
                progress.event(layer.name, layer.key, "layer", "cached", target=plan.target.name)
            elif not forcing and (pulled := cache.pull(layer.name, layer.key)):
                summary.append({"layer": layer.name, "key": layer.key, "state": f"pulled {_mib(pulled.bytes)}", "seconds": pulled.seconds})
                progress.event(layer.name, layer.key, "layer", "pulled", seconds=pulled.seconds, bytes=pulled.bytes,
                               target=plan.target.name)
            else:
                if layer is plan.layers[0]:
                    check_mirror(plan.target)
                _log.info("building layer", layer=layer.name, key=layer.key[:16], elements=" ".join(sorted(layer.runs)))
                attest.forget(layer.key)  # a rebuild's documents describe the new bytes
                result = build_one(plan, layer, parent, verbose)
                _log.info("layer built", layer=layer.name, seconds=round(result.seconds, 1),
                          phases=", ".join(f"{p.phase} {p.seconds:.0f}s" for p in result.phases))
                summary.append({"layer": layer.name, "key": layer.key, "state": "built", "seconds": result.seconds})
                progress.event(layer.name, layer.key, "layer", "built", seconds=result.seconds, target=plan.target.name)
            attest.ensure(layer.key, cache.settings.signing_key)
        parent = layer.tag
    return summary


def build_image(image: ImagePlan, refresh: bool, cache: RemoteCache) -> dict:
    """The datastore image built from the distro archive: reused, pulled from
    a remote cache, or built, as a layer is (one build per key on a host)."""
    from factory.engine import dsimage

    started = time.monotonic()
    row = {"layer": IMAGE_LAYER, "key": image.key}
    if image_exists(layer_tag(image.key)) and not refresh:
        dsimage.tag(image)
        _log.info("layer cached", layer=IMAGE_LAYER, key=image.key[:16], image=image.recipe.ref)
        progress.event(IMAGE_LAYER, image.key, "layer", "cached", target=image.target)
        return {**row, "state": "cached", "seconds": time.monotonic() - started}
    pulled = None
    with _layer_lock(image.key):
        if image_exists(layer_tag(image.key)) and not refresh:
            state, seconds = "cached (built by another run)", time.monotonic() - started
        elif not refresh and (pulled := cache.pull(IMAGE_LAYER, image.key)):
            state, seconds = f"pulled {_mib(pulled.bytes)}", pulled.seconds
        else:
            keyring = None if not image.inputs.keyring else ensure_keyring(image.inputs.distro, None, image.inputs.arch)
            progress.event(IMAGE_LAYER, image.key, "mmdebstrap", "running", target=image.target)
            state, seconds = "built", dsimage.build_image(image, state_dir() / "work", keyring)
        dsimage.tag(image)
    progress.event(IMAGE_LAYER, image.key, "layer", state.split()[0], seconds=seconds,
                   bytes=pulled.bytes if pulled else None, target=image.target)
    return {**row, "state": state, "seconds": seconds}


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _push(stored: list[tuple[str, str]], cache: RemoteCache, summary: list[dict]) -> None:
    sent = cache.push(stored)
    for name, key in stored:
        if key in sent:
            progress.event(name, key, "push", "pushed", seconds=sent[key].seconds, bytes=sent[key].bytes)
    for row in summary:
        if row["key"] in sent:
            row["state"] += f", pushed {_mib(sent[row['key']].bytes)} in {sent[row['key']].seconds:.0f}s"


def print_summary(summary: list[dict], total: float) -> None:
    counts = {"pulled": sum(row["state"].startswith("pulled") for row in summary),
              "built": sum(row["state"] == "built" or row["state"].startswith("built,") for row in summary),
              "pushed": sum(", pushed" in row["state"] for row in summary)}
    _log.info("layers summary", **counts)
    caption = ", ".join(f"{n} {word}" for word, n in counts.items())
    table = Table(title=f"layers ({total:.1f}s in all): {caption}", title_justify="left")
    for col in ("layer", "key", "result", "seconds"):
        table.add_column(col)
    for row in summary:
        table.add_row(row["layer"], row["key"][:16], row["state"], f"{row['seconds']:.1f}")
    Console(stderr=True).print(table)


def planned(target: Target, builder_base: str | None = None) -> tuple[Plan, list[containers.ImageSource]]:
    """The target's layers with their keys (which name the builder image by
    its recipe tag), and its datastore images (container mode)."""
    builder = ensure_builder(host_trust(), base=builder_base, verbose=log.VERBOSE)
    target, sources = containers.with_images(target)
    return plan_stack(target, builder.tag), sources


def plan_with_cache(target: Target, builder_base: str | None = None) -> Plan:
    """The plan `factory plan` shows: each layer says whether the local store has it."""
    plan, sources = planned(target, builder_base)
    for layer in plan.layers:
        layer.cached = image_exists(layer.tag)
    plan.images = [{"image": s.ref, "source": s.kind,
                    **({"key": s.plan.key, "cached": image_exists(layer_tag(s.plan.key))} if s.plan else {})}
                   for s in sources]
    return plan


def check_size_floor(plan: Plan) -> None:
    """--image-size against the tree, when the top layer is there to measure
    (the assembler checks it again, exactly, on the tree it lays out)."""
    size, top = plan.target.image_size, plan.layers[-1]
    if not size or not image_exists(top.tag):
        return
    need = size_floor_gib(client().images.get(top.tag).attrs["Size"])
    if float(size_in_gib(size)) < need:
        raise UsageError(f"--image-size {size} is too small for this target: its tree needs at least {math.ceil(need * 10) / 10:g}G; "
                         "pass a larger --image-size or leave it out")


@dataclass
class Layered:
    """A target whose layers are in the store: what its assembly needs."""
    plan: Plan
    summary: list[dict]
    stored: list[tuple[str, str]]
    remote: RemoteCache
    started: float


def build(target: Target, refresh: list[str] | None = None, builder_base: str | None = None,
          compression: str = DEFAULT_COMPRESSION, qemu_options: str | None = None,
          cache: CacheSettings = CacheSettings(), bit_identical: bool = False) -> Path:
    """Build a target; returns its manifest (beside the images it names)."""
    return assemble_layered(build_target_layers(target, refresh, builder_base, cache), refresh, compression,
                            qemu_options, cache, bit_identical)


def build_target_layers(target: Target, refresh: list[str] | None = None, builder_base: str | None = None,
                        cache: CacheSettings = CacheSettings()) -> Layered:
    """The first half of a build: every layer of the target reused, pulled or built."""
    started = time.monotonic()
    gc.remove_orphan_containers()
    for warning in agent.warnings(target.agent, target.mode, target.datastore) + compat.target_warnings(target):
        _log.warning(warning)
    plan, sources = planned(target, builder_base)
    check_requirements(plan)
    check_size_floor(plan)
    _ensure_keyring(plan.target)
    remote = RemoteCache(cache)
    summary, stored = _images_and_layers(plan, [s.plan for s in sources if s.plan], list(refresh or []), remote)
    plan.images = [preload.record(s) for s in sources]
    return Layered(plan, summary, stored, remote, started)


def assemble_layered(layered: Layered, refresh: list[str] | None = None, compression: str = DEFAULT_COMPRESSION,
                     qemu_options: str | None = None, cache: CacheSettings = CacheSettings(),
                     bit_identical: bool = False) -> Path:
    """The second half: the artifact from the layers, then the push."""
    assemble_started = time.monotonic()
    manifest = assemble(layered.plan, host_trust(), search_path(), state_dir(), _cache_dir(),
                        compression=compression, qemu_options=qemu_options, verbose=log.VERBOSE, again=bool(refresh),
                        signing_key=cache.signing_key, bit_identical=bit_identical)
    summary = layered.summary + [{"layer": "(assemble)", "key": manifest.name.split(".")[0].rsplit("-", 1)[-1],
                                  "state": "done", "seconds": time.monotonic() - assemble_started}]
    _push(layered.stored, layered.remote, summary)
    print_summary(summary, time.monotonic() - layered.started)
    _log.info("artifact ready", manifest=str(manifest))
    return manifest


def _ensure_keyring(target: Target) -> None:
    if not target.env_dict().get("DIB_APT_KEYRING"):
        ensure_keyring(target.distro, target.env_dict().get("DIB_DISTRIBUTION_MIRROR"), target.arch)


def _images_and_layers(plan: Plan, images: list[ImagePlan], refresh: list[str],
                       remote: RemoteCache) -> tuple[list[dict], list[tuple[str, str]]]:
    """The datastore images, then the layers: each reused, pulled or built.
    Returns the summary rows and what a push sends, bottom first."""
    summary: list[dict] = []
    rebuild = IMAGE_LAYER in refresh
    for image in images:
        summary.append(build_image(image, rebuild, remote))
    if rebuild:  # a rebuilt image has the same key: the layer that preloads it is rebuilt on purpose
        refresh = [r for r in refresh if r != IMAGE_LAYER] + ["datastore"]
    summary += build_layers(plan, refresh, log.VERBOSE, remote)
    return summary, [(IMAGE_LAYER, i.key) for i in images] + [(l.name, l.key) for l in plan.layers]


def find_layer(targets: list[Target], prefix: str, builder_base: str | None = None):
    """The one layer (or datastore image) of these targets whose key starts
    with `prefix`: (plan, its images, the layer's index or the image)."""
    found: dict[str, tuple] = {}
    for target in targets:
        plan, sources = planned(target, builder_base)
        for image in (s.plan for s in sources if s.plan):
            if image.key.startswith(prefix):
                found.setdefault(image.key, (plan, sources, image, IMAGE_LAYER))
        for index, layer in enumerate(plan.layers):
            if layer.key.startswith(prefix):
                found.setdefault(layer.key, (plan, sources, index, layer.name))
    if not found:
        raise UsageError(f"--layer {prefix}: no layer of these targets has such a key; keys change with the matrix, the "
                         "elements and the factory: make the pipeline again (`factory plan --emit`), `factory plan` lists them")
    if len(found) > 1:
        names = ", ".join(f"{entry[3]} {key[:16]}" for key, entry in found.items())
        raise UsageError(f"--layer {prefix} names several layers ({names}); give more of the key")
    return next(iter(found.values()))[:3]


def build_layer(targets: list[Target], prefix: str, refresh: list[str] | None = None, builder_base: str | None = None,
                cache: CacheSettings = CacheSettings()) -> tuple[str, str]:
    """One node of the build graph: the layer whose key starts with `prefix`
    (and what it builds on, reused, pulled or built), pushed to the cache;
    nothing assembled. Returns (layer, key)."""
    started = time.monotonic()
    gc.remove_orphan_containers()
    plan, sources, which = find_layer(targets, prefix, builder_base)
    remote = RemoteCache(cache)
    if isinstance(which, ImagePlan):
        summary = [build_image(which, IMAGE_LAYER in (refresh or []), remote)]
        stored = [(IMAGE_LAYER, which.key)]
    else:
        plan.layers = plan.layers[: which + 1]
        check_requirements(plan)
        _ensure_keyring(plan.target)
        preloaded = " ".join(l.env.get("DATASTORE_IMAGE_SOURCE", "") for l in plan.layers)
        images = [s.plan for s in sources if s.plan and s.plan.key in preloaded]
        summary, stored = _images_and_layers(plan, images, list(refresh or []), remote)
    _push(stored, remote, summary)
    print_summary(summary, time.monotonic() - started)
    return stored[-1]
