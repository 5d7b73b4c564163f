"""`factory diff A B`: what A and B are (two layers, two images, two
manifests) and their trees, for factory/diff.py to compare. Two disk images
are first compared as disks (`qemu-img compare`: two qcow2 files can hold one
disk); differing ones go to diffoscope when it is installed; without it, an
image's tree is read from its tar format (a qcow2 alone cannot be read file
by file here).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker

from factory import diff, manifest as manifests
from factory.engine.docker import client
from factory.errors import FactoryError
from factory.hashing import file_hash
from factory.store import local
from factory.store.s3 import ExportStream
from factory.stored import layer_tag


def layer_tree(ref: str) -> tuple[dict[str, diff.Entry], list[str]]:
    """The files a layer image adds over its parent (the diffs that are its
    own, in order), and those diffs' digests."""
    own = local.own_diffs(ref)
    trees: dict[str, dict[str, diff.Entry]] = {}
    saved = tarfile.open(fileobj=io.BufferedReader(ExportStream(client().api.get_image(ref, chunk_size=1 << 20)), 1 << 20), mode="r|")
    for member in saved:
        if not member.isfile() or not (member.name.endswith("layer.tar") or member.name.startswith("blobs/")):
            continue
        reader = diff.HashingReader(saved.extractfile(member))
        tree: dict[str, diff.Entry] = {}
        try:
            diff.entries(tarfile.open(fileobj=reader, mode="r|"), tree)
        except tarfile.TarError:
            continue  # a config or index blob
        digest = reader.finish()
        if digest in own:
            trees[digest] = tree
    merged: dict[str, diff.Entry] = {}
    for digest in own:
        merged.update(trees.get(digest, {}))
    return merged, own


def _image_ref(text: str) -> str | None:
    """A layer key (or unique prefix) of the local store, or an engine image reference."""
    keys = [r.key for r in local.list_layers()]
    if any(k.startswith(text) for k in keys) and all(c in "0123456789abcdef" for c in text):
        return layer_tag(local.match_key(text, keys, "`factory layers ls`"))
    try:
        client().images.get(text)
        return text
    except (docker.errors.ImageNotFound, docker.errors.APIError):
        return None


def _tar_of(path: Path) -> Path | None:
    """The image's tree as a tarball: the file itself, or the tar format beside it."""
    if path.name.endswith(".tar"):
        return path
    man_path = path.with_name(f"{path.name.rsplit('.', 1)[0]}.manifest.json")
    if not man_path.exists():
        return None
    man = manifests.read(man_path)
    tar = (man.get("images") or {}).get("tar")
    return path.with_name(tar["file"]) if tar else None


def _image_of(path: Path, man: dict) -> Path:
    """The manifest's disk image (qcow2 first), else its tar format."""
    images = man.get("images") or {}
    fmt = next((f for f in ("qcow2", *sorted(images)) if f in images and f != "tar"), "tar" if "tar" in images else None)
    if fmt is None:
        raise FactoryError(f"{path} names no image; pass a .manifest.json that factory build wrote")
    return path.with_name(images[fmt]["file"])


def _manifest_lines(a: dict, b: dict) -> list[str]:
    lines = []
    la = {l["layer"]: l for l in a.get("layers", [])}
    lb = {l["layer"]: l for l in b.get("layers", [])}
    for name in sorted(set(la) | set(lb)):
        x, y = la.get(name, {}), lb.get(name, {})
        if x.get("key") != y.get("key"):
            lines.append(f"layer {name}: key {str(x.get('key'))[:16]} -> {str(y.get('key'))[:16]}")
        pa, pb = set(x.get("packages_added", [])), set(y.get("packages_added", []))
        lines += [f"layer {name}: package only in A: {p}" for p in sorted(pa - pb)]
        lines += [f"layer {name}: package only in B: {p}" for p in sorted(pb - pa)]
    if a.get("tree_sha256") != b.get("tree_sha256"):
        lines.append(f"root tree: {str(a.get('tree_sha256'))[:23]} -> {str(b.get('tree_sha256'))[:23]}")
    for fmt in sorted(set(a.get("images", {})) | set(b.get("images", {}))):
        sa, sb = (a.get("images", {}).get(fmt) or {}).get("sha256"), (b.get("images", {}).get(fmt) or {}).get("sha256")
        if sa != sb:
            lines.append(f"image {fmt}: sha256 {str(sa)[:16]} -> {str(sb)[:16]}")
    return lines


def run(a: str, b: str) -> list[str]:
    """What differs between A and B, one line each (empty: nothing)."""
    paths = [Path(a), Path(b)]
    if all(p.exists() for p in paths):
        return _files(*paths)
    refs = [_image_ref(a), _image_ref(b)]
    if None in refs:
        bad = a if refs[0] is None else b
        raise FactoryError(f"'{bad}' is neither a layer key of the local store, an engine image, nor a file; "
                           "give two layer keys, two images or two manifests")
    (ta, da), (tb, db) = layer_tree(refs[0]), layer_tree(refs[1])
    head = [] if da == db else [f"diff digests: {' '.join(d[7:19] for d in da)} -> {' '.join(d[7:19] for d in db)}"]
    return head + [c.line() for c in diff.compare(ta, tb)]


DISK_SUFFIXES = (".qcow2", ".raw", ".vmdk", ".vdi", ".vhdx")


def _disks(a: Path, b: Path) -> tuple[bool, list[str]]:
    """Two disk images that are not the same file: whether the disks they
    hold are the same (`qemu-img compare`), and what it says when not. Two
    qcow2 files of one disk can differ in the order of their clusters."""
    if not all(p.name.endswith(DISK_SUFFIXES) for p in (a, b)) or not shutil.which("qemu-img"):
        return False, []
    out = subprocess.run(["qemu-img", "compare", str(a), str(b)], capture_output=True, text=True)
    if out.returncode == 0:
        return True, [f"files differ, disks identical (qemu-img compare): {a.name} and {b.name} hold the same disk "
                      "in another cluster order; `factory build --bit-identical` writes the same file"]
    said = (out.stdout or out.stderr).strip().splitlines()
    return False, [f"disks differ (qemu-img compare): {said[-1] if said else 'exit ' + str(out.returncode)}"]


def _files(a: Path, b: Path) -> list[str]:
    lines = []
    if a.name.endswith(".manifest.json") and b.name.endswith(".manifest.json"):
        ma, mb = manifests.read(a), manifests.read(b)
        lines = _manifest_lines(ma, mb)
        a, b = _image_of(a, ma), _image_of(b, mb)
        if not any(l.startswith("image ") for l in lines):  # the manifests' checksums agree
            return lines
    elif file_hash(a) == file_hash(b):
        return lines
    same_disk, said = _disks(a, b)
    lines += said
    if same_disk:
        return lines
    if shutil.which("diffoscope"):
        out = subprocess.run(["diffoscope", "--text", "-", str(a), str(b)], capture_output=True, text=True)
        return lines + out.stdout.splitlines()
    tars = [_tar_of(a), _tar_of(b)]
    if None in tars or not all(t.exists() for t in tars):
        return lines + [f"(no file-level list: {a.name} and {b.name} need diffoscope (apt install diffoscope) "
                        "or their tar format (--format tar) beside them)"]
    trees = []
    for t in tars:
        with tarfile.open(t, mode="r|*") as tar:
            trees.append(diff.entries(tar))
    return lines + [c.line() for c in diff.compare(*trees)]
