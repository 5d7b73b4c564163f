"""The base layer installs what DIB's bootloader hook would install at
finalise (elements/bootloader-packages), for each architecture and block
device, as DIB's own package-installs squash selects it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from factory import ELEMENTS_DIR
from factory.elements import dib_elements_dir

ELEMENT = "bootloader-packages"


def selected(tmp_path, arch: str, block_device: str, skip: str = "False") -> set[str]:
    out = tmp_path / "squashed.json"
    env = {**os.environ, "ARCH": arch, "DIB_BLOCK_DEVICE": block_device, "DIB_SKIP_GRUB_PACKAGE_INSTALL": skip}
    script = dib_elements_dir() / "package-installs" / "bin" / "package-installs-squash"
    subprocess.run([sys.executable, str(script), f"--elements={ELEMENT}", f"--path={ELEMENTS_DIR}", str(out)],
                   env=env, check=True, capture_output=True)
    phases = json.loads(out.read_text())
    return {name for name, _element in phases.get("install.d", {}).get("install", [])}


# What finalise.d/50-bootloader passes to install-packages (DIB 3.43).
@pytest.mark.parametrize("arch, block_device, expected", [
    ("amd64", "mbr", {"grub-pc"}),
    ("amd64", "gpt", {"grub-pc"}),
    ("amd64", "efi", {"grub-efi", "grub-efi-amd64"}),
    ("x86_64", "efi", {"grub-efi", "grub-efi-x86_64"}),
    ("arm64", "efi", {"grub-efi", "grub-efi-arm64"}),
    ("amd64", "", {"grub-pc", "grub-efi", "grub-efi-amd64"}),
    ("ppc64le", "mbr", {"grub-ppc64"}),
])
def test_the_hooks_packages_per_arch_and_block_device(tmp_path, arch, block_device, expected):
    assert selected(tmp_path, arch, block_device) == expected


def test_nothing_when_the_user_skips_the_grub_install(tmp_path):
    assert selected(tmp_path, "amd64", "mbr", skip="True") == set()


def test_names_map_to_the_bootloaders_packages():
    # The hook maps with the bootloader's pkg-map; this element's copy must say the same.
    ours = json.loads((ELEMENTS_DIR / ELEMENT / "pkg-map").read_text())
    dibs = json.loads((dib_elements_dir() / "bootloader" / "pkg-map").read_text())
    assert ours == dibs
