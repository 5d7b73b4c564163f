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
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import docker

from factory import __version__, agent, log
from factory.config import Target
from factory.elements import dib_version, file_hash
from factory.engine import phases
from factory.engine.docker import client, run_output
from factory.engine.layer import ELEVATED, KEEPALIVE, LABEL, _exec, _mounts, _Output, PhaseFailed
from factory.errors import FactoryError
from factory.hostpaths import visible
from factory.layers import ASSEMBLE_PHASES
from factory.manifest import Manifest
from factory.plan import Plan
from factory.trust import Trust

COMPRESSIONS = ("none", "zlib", "zstd")
DEFAULT_COMPRESSION = "zlib"
ASSEMBLER = Path(__file__).parent / "engine" / "dib-assemble"
ASSEMBLER_IN_BUILDER = "/tmp/factory/dib-assemble"
BUILT_IN_BUILDER = "/tmp/factory/built"
OUT_IN_BUILDER = "/tmp/factory/out"
# Loop devices and their partitions: block majors 7 (loop) and 259 (blkext),
# and /dev/loop-control.
DEVICE_RULES = ["b 7:* rwm", "b 259:* rwm", "c 10:237 rwm"]
_log = log.get("assemble")


def size_in_gib(text: str | None) -> str | None:
    """--image-size as DIB's DIB_IMAGE_SIZE (GiB, may be fractional)."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip(), re.I)
    if not m:
        raise FactoryError(f"--image-size '{text}' is not a size; use e.g. 3G")
    value, unit = float(m.group(1)), (m.group(2) or "G").upper()
    gib = value * {"K": 1 / 2**20, "M": 1 / 1024, "G": 1, "T": 1024}[unit]
    return f"{gib:g}"


def assembly_key(plan: Plan, compression: str, qemu_options: str | None) -> str:
    """Everything that changes the artifact beyond the top layer's key."""
    t = plan.target
    data = {
        "top": plan.layers[-1].key,
        "formats": sorted(t.formats),
        "image_size": size_in_gib(t.image_size),
        "compression": compression,
        "qemu_img_options": qemu_options or "",
        "assembler": hashlib.sha256(ASSEMBLER.read_bytes()).hexdigest(),
        "builder": plan.builder_image,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def artifact_name(target: Target, key: str) -> str:
    return f"{target.distro}-{target.release}-{target.datastore}-{key[:12]}"


def _layer_dirs(image: str) -> list[str]:
    data = client().api.inspect_image(image).get("GraphDriver", {})
    if data.get("Name") not in ("overlay2", "overlay"):
        raise FactoryError(f"assembly needs the engine's overlay2 storage driver (this engine uses {data.get('Name')}); configure dockerd with storage-driver overlay2")
    dirs = [data["Data"]["UpperDir"]] + [d for d in data["Data"].get("LowerDir", "").split(":") if d]
    return dirs


def release_loops(work: Path) -> list[str]:
    """Detach loop devices backed by files under `work` (and their partition
    maps). Runs on the host, so it also works after the builder was killed.

    Loops are matched by the backing file's device and inode: set up inside
    the builder through a bind mount, their path as the host reads it is
    relative to that mount ("/image/image0.raw"), not the host path."""
    files = set()
    for path in work.rglob("*"):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            files.add((f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}", st.st_ino))
    listing = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-INO,BACK-MAJ:MIN"],
                             capture_output=True, text=True)
    try:
        loops = json.loads(listing.stdout or "{}").get("loopdevices", [])
    except json.JSONDecodeError:
        loops = []
    released = []
    for loop in loops:
        if (str(loop.get("back-maj:min", "")).strip(), int(loop.get("back-ino") or 0)) not in files:
            continue
        dev = loop["name"]
        for link in Path("/dev/mapper").glob(f"{Path(dev).name}p*"):
            link.unlink(missing_ok=True)
        subprocess.run(["partx", "-d", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        released.append(dev)
    return released


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
        })
        below = set(packages)
    return records


def assemble(plan: Plan, trust: Trust, element_paths: list[Path], state: Path, cache_dir: Path,
             compression: str = DEFAULT_COMPRESSION, qemu_options: str | None = None, verbose: bool = False) -> Path:
    """Build the artifact for a planned (and built) stack; returns the manifest path."""
    target = plan.target
    if compression not in COMPRESSIONS:
        raise FactoryError(f"--compression '{compression}' is not known; use one of {', '.join(COMPRESSIONS)}")
    key = assembly_key(plan, compression, qemu_options)
    name = artifact_name(target, key)
    out_dir = Path(target.output).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / f"{name}.manifest.json"
    if manifest_path.exists() and all((out_dir / f"{name}.{f}").exists() for f in target.formats):
        _log.info("artifact already there; nothing to assemble", manifest=str(manifest_path))
        return manifest_path

    top = plan.layers[-1]
    started = time.monotonic()
    (state / "work").mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"assemble-{key[:12]}-", dir=state / "work"))
    logfile = state / "logs" / f"assemble-{key[:16]}.log"
    logfile.write_text("")
    hooks = work / "hooks"
    phases.make_hooks(hooks, top.visible, top.visible, ASSEMBLE_PHASES)
    layer_dirs = _layer_dirs(top.tag)
    storage_roots = sorted({str(Path(d).parent.parent) for d in layer_dirs})

    env: dict[str, str] = {}
    for layer in plan.layers:
        env.update(layer.env)
    env = phases.contract_env(env, top.visible, element_paths, debug=verbose)
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
        "QEMU_IMG_OPTIONS": qemu_options or "",
        "HOME": "/root",
    })
    for var in ("TARGET_ROOT", "TMP_MOUNT_PATH", "TMP_IMAGE_DIR"):
        env.pop(var, None)
    if target.image_size:
        env["DIB_IMAGE_SIZE"] = size_in_gib(target.image_size)
    (work / "build").mkdir()
    binds = [
        "/dev:/dev:rw",
        f"{hooks}:{phases.HOOKS_IN_BUILDER}:rw",
        f"{work / 'build'}:{work / 'build'}:rw",
        f"{out_dir}:{OUT_IN_BUILDER}:rw",
        f"{cache_dir}:{phases.CACHE_IN_BUILDER}:rw",
        f"{visible(ASSEMBLER)}:{ASSEMBLER_IN_BUILDER}:ro",
        *[f"{r}:{r}:ro" for r in storage_roots],
        *[f"{p}:{p}:ro" for p in element_paths],
        *trust.mounts(),
    ]
    container = None
    out = _Output(logfile, verbose)
    try:
        container = client().containers.create(
            plan.builder_image, command=KEEPALIVE, entrypoint=[], mounts=_mounts(binds),
            labels={f"{LABEL}.building": key, f"{LABEL}.pid": str(os.getpid())},
            device_cgroup_rules=DEVICE_RULES, working_dir="/", **ELEVATED,
        )
        container.start()
        _log.info("assembling", artifact=name, formats=",".join(target.formats), compression=compression)
        try:
            _exec(container, ["bash", ASSEMBLER_IN_BUILDER], env, out, "assemble", logfile)
        except PhaseFailed as e:
            reason = next((l.split("FACTORY-ERROR: ", 1)[1] for l in out.tail if "FACTORY-ERROR: " in l), None)
            raise FactoryError(reason or str(e)) from e
        tree_kb = next((int(l.split(":")[1]) for l in reversed(_read_lines(logfile)) if l.startswith("FACTORY-TREE-KB:")), 0)
        images = {}
        for fmt in target.formats:
            part = out_dir / f"{name}.{fmt}.part"
            final = out_dir / f"{name}.{fmt}"
            digest = file_hash(part)
            part.rename(final)
            (out_dir / f"{final.name}.sha256").write_text(f"{digest}  {final.name}\n")
            images[fmt] = {"file": final.name, "bytes": final.stat().st_size, "sha256": digest}
            _log.info("image written", file=str(final), mib=round(final.stat().st_size / 2**20, 1))
        manifest = Manifest(
            target={**asdict(target), "env": log.redact(dict(target.env))},
            assembly_key=key,
            guest_agent=agent.record(target.agent, target.mode, target.datastore),
            layers=_layer_records(plan),
            images=images,
            tools={"factory": __version__, "diskimage-builder": dib_version(), "builder_image": plan.builder_image,
                   "qemu-img": _qemu_version(plan.builder_image)},
            tree_bytes=tree_kb * 1024,
            seconds=time.monotonic() - started,
        )
        manifest.write(manifest_path)
        return manifest_path
    finally:
        out.close()
        if container is not None:
            try:
                container.remove(force=True, v=True)
            except docker.errors.APIError:
                pass
        for dev in release_loops(work):
            _log.warning("released a loop device left by an interrupted assembly", device=dev)
        for part in out_dir.glob(f"{name}.*.part"):
            part.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


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
