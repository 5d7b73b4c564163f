"""The identifiers DIB's block-device machinery draws at random, derived
from the image's disk key (keys.disk_key) instead, so that two assemblies of one disk
give the same filesystem UUIDs (which grub.cfg and the fstab name) and the
same MBR disk identifier.

Runs in the builder under DIB's Python (PyYAML is DIB's own dependency):
    block_ids.py config SEED CONFIG.yaml   give every mkfs node without a uuid one
    block_ids.py disk-id SEED IMAGE.raw    set an MBR image's disk identifier, or
                                           a GPT image's disk and partition GUIDs (sgdisk)
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import uuid

MBR_DISK_ID_OFFSET = 440  # 4 bytes, little endian; the partition table follows
MBR_SIGNATURE = b"\x55\xaa"  # at 510
GPT_SIGNATURE = b"EFI PART"  # at the start of LBA 1


def fs_uuid(seed: str, name: str) -> str:
    """A filesystem's UUID from the disk key and its mkfs node's name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory:filesystem:{seed}:{name}"))


def disk_id(seed: str) -> bytes:
    """The MBR disk identifier from the disk key: 4 bytes, never 0 (no id)."""
    digest = hashlib.sha256(f"factory:mbr:{seed}".encode()).digest()
    return digest[:4] if digest[:4] != b"\0\0\0\0" else b"\0\0\0\1"


def with_ids(config, seed: str):
    """The block-device config (DIB's YAML, as loaded) with a derived uuid
    on every mkfs node that has none; a uuid given in the config stays.
    An mkfs inside a partition is named mkfs_<partition> unless named."""
    if isinstance(config, list):
        return [with_ids(item, seed) for item in config]
    if not isinstance(config, dict):
        return config
    out = {}
    for k, v in config.items():
        v = with_ids(v, seed)
        if k == "mkfs" and isinstance(v, dict) and "uuid" not in v:
            name = v.get("name") or f"mkfs_{config.get('name', '')}"
            v = {**v, "uuid": fs_uuid(seed, name)}
        out[k] = v
    return out


def gpt_guid(seed: str, what: str) -> str:
    """A GPT disk GUID ("disk") or partition GUID ("partition-N") from the disk key."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory:gpt:{seed}:{what}"))


def gpt_partitions(image: str, sector: int = 512) -> list[int] | None:
    """The numbers of a GPT image's used partition entries; None without a GPT."""
    with open(image, "rb") as f:
        f.seek(sector)
        header = f.read(92)
        if header[:8] != GPT_SIGNATURE:
            return None
        entries_lba, count, size = struct.unpack_from("<QII", header, 72)
        f.seek(entries_lba * sector)
        table = f.read(count * size)
    return [n + 1 for n in range(count) if table[n * size:n * size + 16].strip(b"\0")]


def set_disk_id(image: str, seed: str) -> str:
    """Write the derived identifiers into a raw image: a GPT's disk and
    partition GUIDs (with sgdisk, which keeps both headers' checksums right),
    else an MBR's disk identifier. Says what it did."""
    partitions = gpt_partitions(image)
    if partitions is not None:
        cmd = ["sgdisk", f"--disk-guid={gpt_guid(seed, 'disk')}"]
        cmd += [f"--partition-guid={n}:{gpt_guid(seed, f'partition-{n}')}" for n in partitions]
        subprocess.run([*cmd, image], check=True, capture_output=True)
        return f"GPT disk and {len(partitions)} partition GUIDs set"
    with open(image, "r+b") as f:
        f.seek(510)
        if f.read(2) != MBR_SIGNATURE:
            return "no partition table: no disk identifier"
        f.seek(MBR_DISK_ID_OFFSET)
        f.write(disk_id(seed))
    return "disk identifier set"


def main(argv: list[str]) -> int:
    command, seed, path = argv
    if command == "config":
        import yaml

        with open(path) as f:
            config = yaml.safe_load(f)
        with open(path, "w") as f:
            yaml.safe_dump(with_ids(config, seed), f, default_flow_style=False)
    elif command == "disk-id":
        print(set_disk_id(path, seed))
    else:
        raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
