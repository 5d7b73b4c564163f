"""Is a file the disk image it claims to be? Checked before anything boots
it (`verify`) or uploads it (`publish`): a regular, non-empty file, of the
format it names as `qemu-img info` reads it, and with the sha256 its
manifest recorded. Each failure is one line saying what to do."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from factory.errors import Unavailable, UsageError
from factory.hashing import file_hash

# Formats qemu-img probes by their header; raw has none (see _raw_disk).
PROBED = ("qcow2", "vmdk", "vdi", "vhdx")
SUFFIX_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".img": "raw", ".vmdk": "vmdk", ".vdi": "vdi", ".vhdx": "vhdx",
                  ".tar": "tar"}


def format_of(path: Path) -> str | None:
    """The format a file's name claims."""
    return SUFFIX_FORMATS.get(Path(path).suffix.lower())


def _probed_format(path: Path) -> str:
    if not shutil.which("qemu-img"):
        raise Unavailable("qemu-img is missing; run ./factory.sh once (it installs qemu-utils) or apt-get install qemu-utils")
    run = subprocess.run(["qemu-img", "info", "--output", "json", str(path)], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise UsageError(f"{path} is not a disk image qemu-img can read ({(run.stderr.strip().splitlines() or ['?'])[-1]}); "
                         "give an image that factory build made")
    return json.loads(run.stdout).get("format", "?")


def _raw_disk(path: Path) -> bool:
    """A raw disk made by the assembler starts with a partition table: an
    MBR's boot signature, or a GPT header after it."""
    with open(path, "rb") as f:
        head = f.read(1024)
    return head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART"


def check(path: Path, fmt: str, sha256: str | None = None) -> None:
    """Refuse `path` unless it is a `fmt` image (with that sha256, if given)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}; give the path of a built image (.qcow2) or its .manifest.json") from e
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is not a regular file; give the path of a built image (.qcow2)")
    if st.st_size == 0:
        raise UsageError(f"{path} is empty (0 bytes), not a {fmt} image; rebuild it with factory build")
    if fmt == "tar":
        found = "tar" if tarfile.is_tarfile(path) else "not a tar archive"
    else:
        found = _probed_format(path)
        if fmt == "raw" and found == "raw" and not _raw_disk(path):
            found = "raw bytes without a partition table"
    if found != fmt:
        raise UsageError(f"{path} claims to be {fmt} but qemu-img reads it as {found}; give an image that factory build made")
    if sha256:
        actual = file_hash(path)
        if actual != sha256:
            raise UsageError(f"{path} has sha256 {actual[:16]}..., its manifest says {sha256[:16]}...: it changed after "
                             "the build (damaged or replaced); rebuild it or fetch it again")
