"""factory/engine/dib-tidy: identities reset, and named only when changed
(the list decides whether an initramfs is made again)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from factory.engine.phases import TIDY_SOURCE

EPOCH = 1704067200


def tidy(tree: Path, listing: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "TIDIED_LIST": str(listing)}
    return subprocess.run(["bash", str(TIDY_SOURCE), str(tree)], env=env, capture_output=True, text=True)


def write(tree: Path, rel: str, text: str) -> Path:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_build_time_identity_is_reset_and_named(tmp_path):
    tree, listing = tmp_path / "tree", tmp_path / "tidied"
    write(tree, "etc/iscsi/initiatorname.iscsi", "InitiatorName=iqn.1993-08.org.debian:01:5e1f2a\n")
    write(tree, "etc/ssh/ssh_host_ed25519_key", "secret\n")
    write(tree, "etc/hostname", "buildbox\n")
    run = tidy(tree, listing)
    assert run.returncode == 0, run.stderr
    assert (tree / "etc/iscsi/initiatorname.iscsi").read_text() == "GenerateName=yes\n"
    assert (tree / "etc/hostname").read_text() == "localhost\n"
    assert not (tree / "etc/ssh/ssh_host_ed25519_key").exists()
    assert sorted(listing.read_text().split()) == ["/etc/hostname", "/etc/iscsi/initiatorname.iscsi",
                                                   "/etc/ssh/ssh_host_ed25519_key"]


def test_placeholders_already_in_place_are_not_named(tmp_path):
    """first-boot-identities put GenerateName=yes there before the install:
    nothing an initramfs holds changed, so none is made again."""
    tree, listing = tmp_path / "tree", tmp_path / "tidied"
    write(tree, "etc/iscsi/initiatorname.iscsi", "GenerateName=yes\n")
    write(tree, "etc/hostname", "localhost\n")
    run = tidy(tree, listing)
    assert run.returncode == 0, run.stderr
    assert not listing.exists() or listing.read_text() == ""
    assert (tree / "etc/iscsi/initiatorname.iscsi").read_text() == "GenerateName=yes\n"
