"""The image's ext filesystems written again from their trees, so that two
assemblies of one key give the same disk, byte for byte.

DIB's block-device machinery makes each filesystem empty; the tree is copied
onto it mounted and the finalise hooks (the bootloader) run in it. The
kernel then decides block and inode placement, inode generations, change
and access times, and the directory hash seed is random: no two such disks
are alike. Once finalise is done, each mounted ext filesystem is written
again by `mke2fs -d` from its own tree (user space, in name order), with its
UUID and label, a hash seed from the disk key and every time at
SOURCE_DATE_EPOCH, into a new disk file at the same offset. What lies
outside those filesystems (the partition table, the bootloader's code in
the gap after it, other partitions) is copied from the old disk once DIB
has unmounted and detached it.

Runs in the builder under DIB's Python (standard library only):
    remake_fs.py make STATE.json OLD.raw NEW.raw SEED EPOCH   while mounted
    remake_fs.py splice NEW.raw OLD.raw                       after DIB's umount and cleanup
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

EXT = ("ext2", "ext3", "ext4")
_CHUNK = 1 << 20


def hash_seed(seed: str, name: str) -> str:
    """The directory hash seed of a filesystem, from the disk key and its mkfs node's name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory:hash-seed:{seed}:{name}"))


def extent(device: str) -> tuple[int, int]:
    """Start and size in bytes of a filesystem's device within its disk (a
    loop partition, or the whole loop device)."""
    sysfs = Path("/sys/class/block") / Path(os.path.realpath(device)).name
    start = int((sysfs / "start").read_text()) * 512 if (sysfs / "partition").exists() else 0
    return start, int((sysfs / "size").read_text()) * 512


def mkfs_command(fs: dict, name: str, start: int, size: int, seed: str, source: str, disk: str) -> list[str]:
    """DIB's mkfs of this node (type, its options, label, UUID), populated
    from `source` and written at `start` in `disk`."""
    opts = list(fs.get("opts") or [])
    extended = [f"offset={start}", f"hash_seed={hash_seed(seed, name)}"]
    if "-E" in opts:  # mke2fs keeps only the last -E: the user's options join ours
        i = opts.index("-E")
        extended[:0] = [opts[i + 1]]
        del opts[i:i + 2]
    return ["mke2fs", "-t", fs["fstype"], *opts, "-L", fs["label"], "-U", fs["uuid"], "-q", "-F",
            "-E", ",".join(extended), "-d", source, disk, f"{size // 1024}k"]


def used_inodes(dumpe2fs_text: str) -> list[int]:
    """Inodes in use (the root and every inode past the reserved ones), from
    dumpe2fs's per-group free-inode ranges."""
    per_group = int(re.search(r"Inodes per group:\s+(\d+)", dumpe2fs_text).group(1))
    used = []
    for group, body in re.findall(r"\nGroup (\d+):(.*?)(?=\nGroup \d+:|\Z)", dumpe2fs_text, re.S):
        free: set[int] = set()
        ranges = re.search(r"Free inodes: ([^\n]*)", body)
        for part in filter(None, (p.strip() for p in (ranges.group(1) if ranges else "").split(","))):
            a, _, b = part.partition("-")
            free.update(range(int(a), int(b or a) + 1))
        first = int(group) * per_group + 1
        used += [i for i in range(first, first + per_group) if i not in free and (i == 2 or i >= 11)]
    return used


def time_commands(inodes: list[int], epoch: int) -> str:
    """debugfs commands: access and change times at the epoch (mke2fs -d
    takes them from the source files, where they are the copy's time)."""
    return "".join(f"sif <{i}> atime @{epoch}\nsif <{i}> ctime @{epoch}\n" for i in inodes)


def uncovered(size: int, made: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The byte ranges of a disk of `size` outside the (start, size) ranges made anew."""
    ranges, at = [], 0
    for start, length in sorted(made):
        if start > at:
            ranges.append((at, start - at))
        at = max(at, start + length)
    if at < size:
        ranges.append((at, size - at))
    return ranges


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"FACTORY-ERROR: {cmd[0]} failed while writing the filesystem again: "
                         f"{(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def make(state_path: str, old: str, new: str, seed: str, epoch: str) -> None:
    state = json.loads(Path(state_path).read_text())
    with open(new, "wb") as f:
        f.truncate(os.path.getsize(old))
    made = []
    for point in state.get("mount_order", []):
        mount = state["mount"][point]
        fs = state["filesys"][mount["base"]]
        if fs["fstype"] not in EXT:
            continue
        start, size = extent(fs["device"])
        # Its own tree only: a non-recursive bind hides the filesystems mounted below it.
        source = f"{new}.src"
        os.makedirs(source, exist_ok=True)
        subprocess.run(["mount", "--bind", mount["path"], source], check=True)
        try:
            write_fs(fs, mount["base"], start, size, seed, epoch, source, new)
        finally:
            subprocess.run(["umount", source], check=True)
            os.rmdir(source)
        made.append((start, size))
    Path(f"{new}.json").write_text(json.dumps(made))


def write_fs(fs: dict, name: str, start: int, size: int, seed: str, epoch: str, source: str, disk: str) -> None:
    """One filesystem from `source` at `start` in `disk`, every time at the epoch."""
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": epoch}
    _run(mkfs_command(fs, name, start, size, seed, source, disk), env)
    where = f"{disk}?offset={start}"
    inodes = used_inodes(_run(["dumpe2fs", where], env))
    _run(["debugfs", "-w", "-f", "-", where], env, stdin=time_commands(inodes, int(epoch)))


def splice(new: str, old: str) -> None:
    """Copy the old disk's bytes outside the new filesystems (holes stay holes),
    then put the new disk in the old one's place."""
    made = [tuple(r) for r in json.loads(Path(f"{new}.json").read_text())]
    size = os.path.getsize(old)
    with open(old, "rb") as src, open(new, "r+b") as dst:
        for start, length in uncovered(size, made):
            at, end = start, start + length
            while at < end:
                try:
                    at = os.lseek(src.fileno(), at, os.SEEK_DATA)
                except OSError:  # no data up to the end of the file
                    break
                if at >= end:
                    break
                stop = min(end, os.lseek(src.fileno(), at, os.SEEK_HOLE))
                src.seek(at)
                dst.seek(at)
                while at < stop:
                    chunk = src.read(min(_CHUNK, stop - at))
                    dst.write(chunk)
                    at += len(chunk)
    os.remove(f"{new}.json")
    os.replace(new, old)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"make": make, "splice": splice}[command](*args)
