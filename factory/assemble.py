"""Assemble: the built layer stack -> a bootable disk image and its artifact.

The top layer's image is flattened without a copy (its layer folders stacked
read-only by overlayfs inside the builder), then DIB's finalise-time half runs
there (`engine/dib-assemble`): block-device.d and DIB's block-device machinery,
pre-finalise.d, finalise.d chrooted into the new filesystem, cleanup.d, and
qemu-img. Loop devices are the only host resource it takes; they are released
on every path, also when the build is interrupted.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import docker

from factory import __version__, agent, attest, diff, keys, log, owners, progress, provenance, reproducible, sbom, signing
from factory.target import Target
from factory.target_settings import size_in_gib
from factory.elements import dib_version
from factory.errors import BuildFailed
from factory.engine import phases
from factory.engine.docker import client, run_output
from factory.engine.assembly import layer_dirs_of, release_loops, run_assembler
from factory.hashing import file_hash
from factory.hostpaths import visible
from factory.layers import ASSEMBLE_PHASES
from factory.locks import host_lock
from factory.manifest import Manifest
from factory.plan import Plan
from factory.trust import Trust

DEFAULT_COMPRESSION = "zlib"
ASSEMBLER = Path(__file__).parent / "engine" / "dib-assemble"
ASSEMBLER_IN_BUILDER = "/tmp/factory/dib-assemble"
BLOCK_IDS = Path(__file__).parent / "engine" / "block_ids.py"
BLOCK_IDS_IN_BUILDER = "/tmp/factory/block_ids.py"
REMAKE_FS = Path(__file__).parent / "engine" / "remake_fs.py"
REMAKE_FS_IN_BUILDER = "/tmp/factory/remake_fs.py"
BUILT_IN_BUILDER = "/tmp/factory/built"
OUT_IN_BUILDER = "/tmp/factory/out"
_log = log.get("assemble")


def _assembler_hash() -> str:
    return hashlib.sha256(ASSEMBLER.read_bytes() + BLOCK_IDS.read_bytes() + REMAKE_FS.read_bytes()).hexdigest()


def assembly_key(plan: Plan, compression: str, qemu_options: str | None, bit_identical: bool = False) -> str:
    t = plan.target
    return keys.assembly_key(plan.layers[-1].key, t.formats, size_in_gib(t.image_size), compression, qemu_options,
                             _assembler_hash(), plan.builder_image, bit_identical)


def disk_key(plan: Plan) -> str:
    """The seed of the disk's identifiers: one disk whatever it is written as."""
    return keys.disk_key(plan.layers[-1].key, size_in_gib(plan.target.image_size), _assembler_hash(), plan.builder_image)


def artifact_name(target: Target, key: str) -> str:
    return f"{target.name}-{key[:12]}"


def _packages(image: str) -> list[str]:
    try:
        out = run_output(image, ["sh", "-c", "dpkg-query -W -f '${Package}=${Version}\\n' 2>/dev/null || rpm -qa 2>/dev/null || true"])
    except docker.errors.APIError:
        return []
    return sorted(line for line in out.decode().splitlines() if line)


def _layer_records(plan: Plan) -> list[dict]:
    records, below = [], set()
    for layer in plan.layers:
        packages = _packages(layer.tag)
        records.append({
            "layer": layer.name,
            "key": layer.key,
            "parent": layer.inputs.parent,
            "elements": sorted(layer.runs),
            "element_hashes": layer.inputs.elements,
            "packages_added": sorted(set(packages) - below),
            "sbom_sha256": provenance.digest_of(attest.ensure(layer.key)[attest.SBOM]),
        })
        below = set(packages)
    return records


def _layer_facts(plan: Plan) -> tuple[list[dict], sbom.Inventory, str]:
    """The manifest's layer records, the top tree's package inventory and the
    builder's qemu-img version."""
    return _layer_records(plan), attest.layer_inventory(plan.layers[-1].key), _qemu_version(plan.builder_image)


def _supply_chain(plan: Plan, name: str, key: str, target_json: dict, images: dict, folder: Path,
                  signing_key: Path | None, inventory: sbom.Inventory) -> dict[str, str]:
    """The image's SBOM (every package of its tree) and provenance statement
    (signed when a key is given), written into the folder; file names by kind."""
    top = plan.layers[-1]
    document = sbom.document(inventory, name, key,
                             reproducible.source_date_epoch(top.inputs.env), __version__)
    problem = sbom.problems(document)
    if problem:
        _log.warning("the image's SBOM does not validate", problem=problem[:300])
    layers = [{"layer": l.name, "key": l.key, "image_id": client().images.get(l.tag).id} for l in plan.layers]
    statement = provenance.image_statement({i["file"]: i["sha256"] for i in images.values()}, key, target_json, layers,
                                           plan.builder_image, document.encode(), __version__)
    files = {"sbom": f"{name}.sbom.cdx.json", "provenance": f"{name}.provenance.json"}
    (folder / files["sbom"]).write_text(document)
    (folder / files["provenance"]).write_bytes(provenance.encode(statement))
    if signing_key is not None:
        files["signature"] = f"{name}.provenance.json.sig"
        (folder / files["signature"]).write_bytes(signing.sign(provenance.encode(statement), signing_key))
    return files


def assemble(plan: Plan, trust: Trust, element_paths: list[Path], state: Path, cache_dir: Path,
             compression: str = DEFAULT_COMPRESSION, qemu_options: str | None = None, verbose: bool = False,
             again: bool = False, signing_key: Path | None = None, bit_identical: bool = False) -> Path:
    """Build the artifact for a planned (and built) stack; returns the manifest path.
    `again`: a layer was rebuilt on purpose (--refresh) under its same key, so
    an artifact with the same key holds the old bytes."""
    target = plan.target
    key = assembly_key(plan, compression, qemu_options, bit_identical)
    name = artifact_name(target, key)
    out_dir = Path(target.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / f"{name}.manifest.json"
    # Concurrent builds of one target into one folder (CI jobs on one host)
    # take turns: the second finds the first one's artifact. Without the lock
    # both would assemble, and one's manifest could sit beside the other's
    # image (two assemblies of one key need not give the same bytes).
    lock = hashlib.sha256(str(manifest_path).encode()).hexdigest()[:24]
    with host_lock(f"artifact-{lock}", "another build is assembling this artifact; waiting for it", artifact=name):
        if not again and manifest_path.exists() and all((out_dir / f"{name}.{f}").exists() for f in target.formats):
            _log.info("artifact already there; nothing to assemble", manifest=str(manifest_path))
            progress.event("assemble", key, "assemble", "cached", target=target.name, path=str(manifest_path))
            return manifest_path
        return _assemble(plan, trust, element_paths, state, cache_dir, compression, qemu_options, verbose,
                         key, name, out_dir, manifest_path, signing_key, bit_identical)


def _assemble(plan: Plan, trust: Trust, element_paths: list[Path], state: Path, cache_dir: Path, compression: str,
              qemu_options: str | None, verbose: bool, key: str, name: str, out_dir: Path,
              manifest_path: Path, signing_key: Path | None, bit_identical: bool) -> Path:
    target = plan.target
    started = time.monotonic()
    (state / "work").mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    # Both folders are recorded before they exist, so that a later run
    # removes them (and releases the loop devices backed by files in the
    # first) if this one is killed. Images are written into the second, a
    # hidden folder in the output folder (a rename from there is atomic), and
    # take their final name only once complete.
    work = state / "work" / f"assemble-{key[:12]}-{secrets.token_hex(4)}"
    partial_dir = out_dir / f".factory-partial-{os.getpid()}-{secrets.token_hex(4)}"
    records = [owners.record(owners.FOLDER, work), owners.record(owners.FOLDER, partial_dir)]
    try:
        work.mkdir()
        partial_dir.mkdir()
        logfile = state / "logs" / f"assemble-{key[:16]}.log"
        logfile.write_text("")
        env, binds = _assembler_inputs(plan, trust, element_paths, cache_dir, work, partial_dir, name,
                                       compression, qemu_options, verbose)
        env["FACTORY_IMAGE_SEED"] = disk_key(plan)
        env["FACTORY_IN_ORDER"] = "1" if bit_identical else ""
        _log.info("assembling", artifact=name, formats=",".join(target.formats), compression=compression)
        progress.event("assemble", key, "assemble", "running", target=target.name)
        # What the manifest and SBOM say about the layers is read from them
        # (a container each) while the assembler runs, not after it.
        facts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layer-facts")
        layer_facts = facts.submit(_layer_facts, plan)
        facts.shutdown(wait=False)
        try:
            run_assembler(plan.builder_image, binds, env, ["bash", ASSEMBLER_IN_BUILDER], key, logfile, verbose,
                          lambda text: _on_line(key, text))
        except BuildFailed:
            progress.event("assemble", key, "assemble", "failed", seconds=time.monotonic() - started,
                           target=target.name, path=str(logfile), tail=tuple(_read_lines(logfile)[-15:]))
            raise
        lines = _read_lines(logfile)
        tree_kb = next((int(l.split(":")[1]) for l in reversed(lines) if l.startswith("FACTORY-TREE-KB:")), 0)
        images = {}
        for fmt in target.formats:
            part = partial_dir / f"{name}.{fmt}.part"
            digest = file_hash(part)
            (partial_dir / f"{name}.{fmt}.sha256").write_text(f"{digest}  {name}.{fmt}\n")
            images[fmt] = {"file": f"{name}.{fmt}", "bytes": part.stat().st_size, "sha256": digest}
        tree = _tree_digest(partial_dir / f"{name}.tar.part") if "tar" in target.formats else None
        target_json = {**asdict(target), "env": log.redact(dict(target.env))}
        layer_records, inventory, qemu_img = layer_facts.result()
        supply = _supply_chain(plan, name, key, target_json, images, partial_dir, signing_key, inventory)
        manifest = Manifest(
            target=target_json,
            assembly_key=key,
            guest_agent=agent.record(target.agent, target.mode, target.datastore),
            datastore_images=plan.images,
            layers=layer_records,
            images=images,
            tools={"factory": __version__, "diskimage-builder": dib_version(), "builder_image": plan.builder_image,
                   "qemu-img": qemu_img},
            tree_bytes=tree_kb * 1024,
            seconds=time.monotonic() - started,
            supply_chain=supply,
            tree_sha256=tree,
        )
        manifest.write(partial_dir / manifest_path.name)
        # Images and checksums first, the manifest (what says "done") last.
        for fmt in target.formats:
            (partial_dir / f"{name}.{fmt}.part").rename(out_dir / f"{name}.{fmt}")
            (partial_dir / f"{name}.{fmt}.sha256").rename(out_dir / f"{name}.{fmt}.sha256")
            _log.info("image written", file=str(out_dir / f"{name}.{fmt}"), mib=round(images[fmt]["bytes"] / 2**20, 1))
        for file in supply.values():
            (partial_dir / file).rename(out_dir / file)
        (partial_dir / manifest_path.name).rename(manifest_path)
        progress.event("assemble", key, "assemble", "done", seconds=time.monotonic() - started,
                       bytes=sum(i["bytes"] for i in images.values()), target=target.name, path=str(manifest_path))
        return manifest_path
    finally:
        for dev in release_loops(work) if work.is_dir() else []:
            _log.warning("released a loop device left by an interrupted assembly", device=dev)
        shutil.rmtree(partial_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        for record in records:
            owners.forget(record)


def _assembler_inputs(plan: Plan, trust: Trust, element_paths: list[Path], cache_dir: Path, work: Path,
                      partial_dir: Path, name: str, compression: str, qemu_options: str | None,
                      verbose: bool) -> tuple[dict[str, str], list]:
    """The assembler's environment and bind mounts."""
    target, top = plan.target, plan.layers[-1]
    hooks = work / "hooks"
    phases.make_hooks(hooks, top.visible, top.visible, ASSEMBLE_PHASES)
    layer_dirs = layer_dirs_of(top.tag)
    storage_roots = sorted({str(Path(d).parent.parent) for d in layer_dirs})
    env: dict[str, str] = {}
    for layer in plan.layers:
        env.update(layer.env)
    env = phases.contract_env(env, top.visible, element_paths, debug=verbose or log.TRACE)
    env.update(trust.env())
    env.update({
        "FACTORY_ELEMENT_ARRAY": " ".join(f"[{n}]={e.path}" for n, e in sorted(top.visible.items())),
        "LAYER_DIRS": ":".join(layer_dirs),
        "BUILT": BUILT_IN_BUILDER,
        "TMP_BUILD_DIR": str(work / "build"),  # same path as on the host: loop backing files are findable there
        "TMP_HOOKS_PATH": phases.HOOKS_IN_BUILDER,
        "OUT_DIR": OUT_IN_BUILDER,
        "OUT_NAME": name,
        "OUT_FORMATS": " ".join(target.formats),
        "FACTORY_COMPRESSION": compression,
        "FACTORY_BLOCK_IDS": BLOCK_IDS_IN_BUILDER,
        "FACTORY_REMAKE_FS": REMAKE_FS_IN_BUILDER,
        "FACTORY_TIDY": phases.TIDY,
        "QEMU_IMG_OPTIONS": qemu_options or "",
        "HOME": "/root",
    })
    for var in ("TARGET_ROOT", "TMP_MOUNT_PATH", "TMP_IMAGE_DIR"):
        env.pop(var, None)
    if target.image_size:
        env["DIB_IMAGE_SIZE"] = size_in_gib(target.image_size)
    (work / "build").mkdir()
    binds = [
        ("/dev", "/dev", "rw"),
        (hooks, phases.HOOKS_IN_BUILDER, "rw"),
        (work / "build", work / "build", "rw"),
        (partial_dir, OUT_IN_BUILDER, "rw"),
        (cache_dir, phases.CACHE_IN_BUILDER, "rw"),
        (visible(ASSEMBLER), ASSEMBLER_IN_BUILDER, "ro"),
        (visible(BLOCK_IDS), BLOCK_IDS_IN_BUILDER, "ro"),
        (visible(REMAKE_FS), REMAKE_FS_IN_BUILDER, "ro"),
        (visible(phases.TIDY_SOURCE), phases.TIDY, "ro"),
        *[(r, r, "ro") for r in storage_roots],
        *[(p, p, "ro") for p in element_paths],
        *trust.mounts(),
    ]
    return env, binds


def _tree_digest(tarball: Path) -> str:
    """The image's root tree digest (paths, modes, owners, contents), from its tar format."""
    import tarfile

    with tarfile.open(tarball, mode="r|*") as tar:
        return diff.tree_digest(diff.entries(tar))


def _steps(lines: list[str]) -> list[tuple[str, float]]:
    """The assembler's `FACTORY-STEP: name seconds` lines."""
    steps = []
    for line in lines:
        if line.startswith("FACTORY-STEP: "):
            name, _, seconds = line.split(" ", 1)[1].partition(" ")
            steps.append((name, float(seconds)))
    return steps


def _on_line(key: str, text: str) -> None:
    """Each finished step is logged as it ends (a watcher knows which step
    runs now: the one after it), and every line goes to the progress view."""
    for step, seconds in _steps([text]):
        _log.info("step timed", layer="(assemble)", step=step, seconds=seconds)
    progress.line("assemble", key, text)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _qemu_version(builder_image: str) -> str:
    try:
        out = run_output(builder_image, ["qemu-img", "--version"])
        return out.decode().splitlines()[0]
    except docker.errors.APIError:
        return "unknown"
