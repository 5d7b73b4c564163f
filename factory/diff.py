"""What differs between two trees, file by file (pure): paths, kinds, modes,
owners, sizes, mtimes, sha256 of contents, link targets. It is how a rebuild
that does not match is explained; `factory diff` feeds it layer diffs (from
the engine) or image tarballs, and hands images to diffoscope when that is
installed.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, fields
from typing import BinaryIO, Iterable

_CHUNK = 1 << 20
_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
          tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: str
    owner: str  # uid:gid
    size: int
    mtime: int
    sha256: str = ""  # regular files
    link: str = ""  # symlink or hardlink target


@dataclass(frozen=True)
class Change:
    path: str
    what: str  # "only in A", "only in B", or "differs"
    fields: tuple[str, ...] = ()
    a: Entry | None = None
    b: Entry | None = None

    def line(self) -> str:
        if self.what != "differs":
            entry = self.a or self.b
            return f"{self.what}: {self.path} ({entry.kind}, {entry.size} bytes)"
        parts = [f"{f} {getattr(self.a, f)} -> {getattr(self.b, f)}" for f in self.fields]
        return f"differs: {self.path}: " + "; ".join(parts)


def _name(member: tarfile.TarInfo) -> str:
    return "/" + member.name.removeprefix("./").strip("/")


def entries(tar: tarfile.TarFile, into: dict[str, Entry] | None = None) -> dict[str, Entry]:
    """The entries of a tar stream (read in order, contents hashed); later
    streams given the same `into` lay over earlier ones, as layers do."""
    found = {} if into is None else into
    for member in tar:
        digest = ""
        if member.isfile():
            h, f = hashlib.sha256(), tar.extractfile(member)
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            digest = h.hexdigest()
        found[_name(member)] = Entry(kind=_KINDS.get(member.type, "other"), mode=f"{member.mode:04o}",
                                     owner=f"{member.uid}:{member.gid}", size=member.size if member.isfile() else 0,
                                     mtime=int(member.mtime), sha256=digest, link=member.linkname)
    return found


def compare(a: dict[str, Entry], b: dict[str, Entry]) -> list[Change]:
    """Every path whose entry is not the same in both, by path."""
    changes = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            changes.append(Change(path, "only in A", a=a[path]))
        elif path not in a:
            changes.append(Change(path, "only in B", b=b[path]))
        elif a[path] != b[path]:
            differing = tuple(f.name for f in fields(Entry) if getattr(a[path], f.name) != getattr(b[path], f.name))
            changes.append(Change(path, "differs", differing, a[path], b[path]))
    return changes


def tree_digest(tree: dict[str, Entry]) -> str:
    """sha256 over every path's kind, mode, owner, size, contents and link
    target (not mtimes): two trees with this digest hold the same files."""
    h = hashlib.sha256()
    for path in sorted(tree):
        e = tree[path]
        h.update(f"{path}\0{e.kind}\0{e.mode}\0{e.owner}\0{e.size}\0{e.sha256}\0{e.link}\n".encode())
    return "sha256:" + h.hexdigest()


def summary(changes: Iterable[Change]) -> dict[str, int]:
    """How many paths differ, and in what (a path can count in several fields)."""
    counts: dict[str, int] = {}
    for c in changes:
        for key in (c.fields or (c.what,)):
            counts[key] = counts.get(key, 0) + 1
    return counts


class HashingReader:
    """A file that hashes what is read through it (a layer tarball's diff digest)."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.hash = raw, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def finish(self) -> str:
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()
