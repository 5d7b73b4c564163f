"""Filesystem UUIDs, the MBR disk identifier and GPT GUIDs from the disk key
(factory/engine/block_ids.py, run by the assembler under DIB's Python)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from factory.engine import block_ids

# block-device-mbr's default config, as DIB's YAML loads it.
MBR = [{"local_loop": {"name": "image0"}},
       {"partitioning": {"base": "image0", "label": "mbr", "partitions": [
           {"name": "root", "flags": ["boot", "primary"], "size": "100%",
            "mkfs": {"mount": {"mount_point": "/", "fstab": {"options": "defaults", "fsck-passno": 1}}}}]}}]


def test_every_filesystem_gets_a_uuid_from_the_key_and_a_given_one_stays():
    a, again, other = (block_ids.with_ids(MBR, seed) for seed in ("k" * 64, "k" * 64, "j" * 64))
    root = a[1]["partitioning"]["partitions"][0]["mkfs"]
    assert root["uuid"] == again[1]["partitioning"]["partitions"][0]["mkfs"]["uuid"]
    assert root["uuid"] != other[1]["partitioning"]["partitions"][0]["mkfs"]["uuid"]
    assert uuid.UUID(root["uuid"]).version == 5 and root["mount"]["mount_point"] == "/"
    assert "uuid" not in MBR[1]["partitioning"]["partitions"][0]["mkfs"]  # the loaded config is not changed in place
    two = [{"mkfs": {"name": "fs_boot", "base": "p1", "type": "vfat"}},
           {"mkfs": {"name": "fs_root", "base": "p2", "type": "ext4", "uuid": "given"}}]
    boot, root = (n["mkfs"] for n in block_ids.with_ids(two, "k" * 64))
    assert boot["uuid"] == block_ids.fs_uuid("k" * 64, "fs_boot") != block_ids.fs_uuid("k" * 64, "fs_root")
    assert root["uuid"] == "given"


def test_the_disk_identifier_is_written_into_an_mbr_image_only(tmp_path):
    mbr, blank = tmp_path / "mbr.raw", tmp_path / "blank.raw"
    sector = bytearray(512)
    sector[440:444] = b"\x12\x34\x56\x78"
    sector[510:512] = b"\x55\xaa"
    mbr.write_bytes(bytes(sector) + bytes(512))
    blank.write_bytes(bytes(1024))
    assert block_ids.set_disk_id(str(mbr), "k" * 64) == "disk identifier set"
    assert block_ids.set_disk_id(str(blank), "k" * 64).startswith("no partition table")
    data = mbr.read_bytes()
    assert data[440:444] == block_ids.disk_id("k" * 64) != block_ids.disk_id("j" * 64)
    assert data[:440] == bytes(440) and data[444:] == bytes(sector[444:]) + bytes(512)  # nothing else moved
    assert blank.read_bytes() == bytes(1024)


def _gpt_disk(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    # Two partitions, GUIDs drawn at random by sgdisk, as DIB's GPT layout makes them.
    subprocess.run(["sgdisk", "-n", "1:2048:+1M", "-t", "1:EF02", "-n", "2:0:0", "-t", "2:8300", str(path)],
                   check=True, capture_output=True)


def _guids(path: Path) -> list[str]:
    out = []
    for n in ("", "1", "2"):
        info = subprocess.run(["sgdisk", *(["-i", n] if n else ["-p"]), str(path)], capture_output=True, text=True).stdout
        out += re.findall(r"(?:Disk identifier \(GUID\)|Partition unique GUID): ([0-9A-F-]+)", info)
    return out


@pytest.mark.skipif(not shutil.which("sgdisk"), reason="sgdisk (gdisk) is not installed; scripts/setup-host.sh --test installs it")
def test_a_gpt_images_disk_and_partition_guids_follow_the_key(tmp_path):
    one, two = tmp_path / "one.raw", tmp_path / "two.raw"
    for disk in (one, two):
        _gpt_disk(disk)
    assert _guids(one) != _guids(two)  # drawn at random
    assert block_ids.gpt_partitions(str(one)) == [1, 2]
    for disk in (one, two):
        assert block_ids.set_disk_id(str(disk), "k" * 64) == "GPT disk and 2 partition GUIDs set"
    assert _guids(one) == _guids(two) == [block_ids.gpt_guid("k" * 64, w).upper() for w in ("disk", "partition-1", "partition-2")]
    assert one.read_bytes() == two.read_bytes()
    verify = subprocess.run(["sgdisk", "-v", str(one)], capture_output=True, text=True)
    assert "No problems found" in verify.stdout
