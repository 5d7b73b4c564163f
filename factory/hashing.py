"""Content hashes of host files and trees: what keys and staging compare.

Only content counts: relative paths, modes, bytes, symlink targets. Mtimes and
owners are left out; they differ between checkouts of the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree_hash(path: Path, leave_out: frozenset[str] = frozenset()) -> str:
    """sha256 over a folder's whole tree (an element, a host input), but the
    relative paths in `leave_out`."""
    h = hashlib.sha256()
    root = Path(path)
    entries = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
    for p in entries:
        rel = p.relative_to(root).as_posix()
        if "__pycache__" in p.parts or rel.endswith(".pyc") or rel in leave_out:
            continue
        st = p.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            h.update(f"L {rel} {os.readlink(p)}\n".encode())
        elif stat.S_ISDIR(st.st_mode):
            h.update(f"D {rel} {mode:o}\n".encode())
        elif stat.S_ISREG(st.st_mode):
            h.update(f"F {rel} {mode:o} {file_hash(p)}\n".encode())
    return h.hexdigest()


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(path: Path) -> str:
    """Hash of a host input (file or folder) by content only."""
    p = Path(path)
    if p.is_dir():
        return "dir:" + tree_hash(p)
    return "file:" + file_hash(p)


def files_hash(files: list[Path]) -> str:
    """One hash over named files (their names and bytes, in the given order)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
