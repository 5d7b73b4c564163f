"""The assembly's engine half: where the top layer's folders are on the
engine's host, the privileged builder container the assembler runs in, and
the loop devices it leaves when it is killed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import docker

from factory.engine.docker import client
from factory.engine.run import ELEVATED, Bind, Output, PhaseFailed, exec_in, remove, run_labels, start
from factory.errors import BuildFailed, FactoryError

# Loop devices and their partitions: block majors 7 (loop) and 259 (blkext),
# and /dev/loop-control.
DEVICE_RULES = ["b 7:* rwm", "b 259:* rwm", "c 10:237 rwm"]


def layer_dirs_of(image: str) -> list[str]:
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


def run_assembler(builder_image: str, binds: list[Bind], env: dict[str, str], command: list[str], key: str,
                  logfile: Path, verbose: bool, on_line: Callable[[str], None] | None = None) -> None:
    """Run the assembler in a privileged builder container that may use loop
    devices; the container is gone when this returns or raises."""
    container = None
    out = Output(logfile, verbose, on_line)
    try:
        container = start(builder_image, binds, run_labels(key), device_cgroup_rules=DEVICE_RULES, **ELEVATED)
        try:
            exec_in(container, command, env, out, "assemble", logfile)
        except PhaseFailed as e:
            # The assembler names what went wrong on a FACTORY-ERROR line.
            reason = next((l.split("FACTORY-ERROR: ", 1)[1] for l in out.tail if "FACTORY-ERROR: " in l), None)
            raise BuildFailed(reason or str(e)) from e
    finally:
        out.close()
        if container is not None:
            try:
                remove(container)
            except docker.errors.APIError:
                pass
