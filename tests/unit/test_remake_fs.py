"""The disk's ext filesystems written again from their trees
(factory/engine/remake_fs.py, run by the assembler under DIB's Python): the
pure parts, and mke2fs on files here (e2fsprogs is on every host the README
sets up)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from factory.engine import remake_fs

EPOCH = "1700000000"
ROOT = {"fstype": "ext4", "opts": ["-i", "4096", "-J", "size=4"], "label": "cloudimg-rootfs",
        "uuid": "e45512a6-045b-5d6a-a7cc-1a91770fe146"}
DUMPE2FS = """Inodes per group:         16

Group 0: (Blocks 0-8191)
  Free inodes: 13-16
Group 1: (Blocks 8192-16383)
  Free inodes: 17-20, 22, 25-32
"""


def test_used_inodes_are_the_root_and_all_past_the_reserved_ones_not_free():
    assert remake_fs.used_inodes(DUMPE2FS) == [2, 11, 12, 21, 23, 24]


def test_uncovered_ranges_are_what_lies_outside_the_new_filesystems():
    assert remake_fs.uncovered(100, [(10, 20)]) == [(0, 10), (30, 70)]
    assert remake_fs.uncovered(100, [(50, 50), (0, 10)]) == [(10, 40)]
    assert remake_fs.uncovered(100, [(0, 100)]) == []


def test_the_mkfs_is_dibs_with_the_offset_and_hash_seed_joined_to_the_users_extended_options():
    fs = {**ROOT, "opts": ["-E", "lazy_itable_init=0", "-i", "4096"]}
    cmd = remake_fs.mkfs_command(fs, "mkfs_root", 1048576, 8 << 20, "k" * 64, "/src", "/disk")
    assert cmd[:3] == ["mke2fs", "-t", "ext4"] and "-i" in cmd
    extended = cmd[cmd.index("-E") + 1]
    assert extended.startswith("lazy_itable_init=0,offset=1048576,hash_seed=")
    assert cmd.count("-E") == 1
    assert cmd[-3:] == ["/src", "/disk", "8192k"]
    assert cmd[cmd.index("-U") + 1] == ROOT["uuid"] and cmd[cmd.index("-L") + 1] == "cloudimg-rootfs"


def test_the_hash_seed_follows_the_key_and_the_filesystem():
    a = remake_fs.hash_seed("k" * 64, "mkfs_root")
    assert a == remake_fs.hash_seed("k" * 64, "mkfs_root")
    assert a != remake_fs.hash_seed("j" * 64, "mkfs_root") != remake_fs.hash_seed("k" * 64, "mkfs_boot")


def _tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("guest\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"x" * 70000)
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool2")
    (root / "usr" / "bin" / "link").symlink_to("tool")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (1600000000, 1600000000), follow_symlinks=False)


@pytest.mark.skipif(not shutil.which("mke2fs") or not shutil.which("debugfs"), reason="e2fsprogs is not installed")
def test_two_copies_of_a_tree_made_at_different_times_give_the_same_filesystem(tmp_path):
    disks = []
    for name in ("one", "two"):
        _tree(tmp_path / name)  # ctimes differ: the second copy is made later
        time.sleep(1.1)
        disk = tmp_path / f"{name}.disk"
        with open(disk, "wb") as f:
            f.truncate(24 << 20)
        remake_fs.write_fs(ROOT, "mkfs_root", 1 << 20, 16 << 20, "k" * 64, EPOCH, str(tmp_path / name), str(disk))
        disks.append(hashlib.sha256(disk.read_bytes()).hexdigest())
    assert disks[0] == disks[1]
    stat = subprocess.run(["debugfs", "-R", "stat /usr/bin/tool", f"{tmp_path / 'one.disk'}?offset={1 << 20}"],
                          capture_output=True, text=True).stdout
    assert "ctime: 0x6553f100" in stat and "mtime: 0x5f5e1000" in stat  # the epoch; the tree's own mtime
    fsck = subprocess.run(["e2fsck", "-fn", f"{tmp_path / 'one.disk'}?offset={1 << 20}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_splice_copies_the_old_disk_outside_the_new_filesystems_and_takes_its_place(tmp_path):
    old, new = tmp_path / "old.raw", tmp_path / "new.raw"
    with open(old, "wb") as f:
        f.truncate(8 << 20)
        f.write(b"M" * 512)  # partition table and boot code
        f.seek(1 << 20)
        f.write(b"O" * 4096)  # the old filesystem
        f.seek((7 << 20) + 100)
        f.write(b"T")  # past the filesystem (a backup GPT)
    with open(new, "wb") as f:
        f.truncate(8 << 20)
        f.seek(1 << 20)
        f.write(b"N" * 4096)
    (tmp_path / "new.raw.json").write_text("[[1048576, 4194304]]")
    remake_fs.splice(str(new), str(old))
    data = old.read_bytes()
    assert not new.exists() and not (tmp_path / "new.raw.json").exists()
    assert data[:512] == b"M" * 512 and data[1 << 20:(1 << 20) + 4096] == b"N" * 4096
    assert data[(7 << 20) + 100:(7 << 20) + 101] == b"T" and len(data) == 8 << 20
    assert os.stat(old).st_blocks * 512 < 1 << 20  # holes stayed holes
