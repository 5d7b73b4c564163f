"""Layer keys and the content hashes that feed them."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from factory.hashing import content_hash, tree_hash
from factory.keys import KeyInputs, layer_key


def inputs(**overrides) -> KeyInputs:
    """A fresh KeyInputs built from fresh objects each call."""
    values = dict(
        layer="guest",
        parent="a" * 64,
        phases=("extra-data", "pre-install", "install"),
        elements={"debian-guest": "1" * 64, "trove-guest": "2" * 64},
        new_elements=("debian-guest", "trove-guest"),
        dib_version="3.43.0",
        engine="e" * 64,
        builder_image="sha256:builder",
        env={"DIB_RELEASE": "bookworm", "GUEST_USERNAME": "trove"},
        host_inputs={"/srv/pkg.tar": "file:" + "3" * 64, "/srv/ssh": "dir:" + "5" * 64},
        packages=("vim",),
    )
    values.update(overrides)
    return KeyInputs(**values)


def test_key_is_stable_for_equal_inputs():
    a, b = inputs(), inputs()
    assert a is not b and a.elements is not b.elements
    assert layer_key(a) == layer_key(b)
    assert len(layer_key(a)) == 64 and int(layer_key(a), 16) >= 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("layer", "datastore"),
        ("parent", "b" * 64),
        ("parent", None),
        ("phases", ("extra-data", "pre-install", "install", "post-install")),
        ("phases", ("install", "pre-install", "extra-data")),  # phase order matters
        ("elements", {"debian-guest": "1" * 64, "trove-guest": "9" * 64}),  # an element's tree hash
        ("elements", {"debian-guest": "1" * 64, "trove-guest": "2" * 64, "devuser": "4" * 64}),
        ("new_elements", ("debian-guest",)),
        ("dib_version", "3.44.0"),
        ("engine", "f" * 64),
        ("builder_image", "sha256:other"),
        ("env", {"DIB_RELEASE": "bookworm", "GUEST_USERNAME": "alice"}),
        ("env", {"DIB_RELEASE": "bookworm", "GUEST_USERNAME": "trove", "FOO": "1"}),
        ("host_inputs", {"/srv/pkg.tar": "file:" + "4" * 64, "/srv/ssh": "dir:" + "5" * 64}),
        ("host_inputs", {"/srv/pkg.tar": "file:" + "3" * 64}),
        ("host_inputs", {}),
        ("packages", ("vim", "curl")),
        ("packages", ()),
    ],
)
def test_key_changes_with_each_field(field, value):
    base = inputs()
    assert getattr(base, field) != value
    assert layer_key(inputs(**{field: value})) != layer_key(base)


def test_every_field_is_covered_by_the_parametrized_test():
    # A new KeyInputs field should get its own "changes the key" case above.
    names = {f.name for f in dataclasses.fields(KeyInputs)}
    assert names == {
        "layer", "parent", "phases", "elements", "new_elements", "dib_version",
        "engine", "builder_image", "env", "host_inputs", "packages",
    }


def test_key_insensitive_to_dict_and_new_element_order():
    a = inputs()
    b = inputs(
        elements={"trove-guest": "2" * 64, "debian-guest": "1" * 64},
        env={"GUEST_USERNAME": "trove", "DIB_RELEASE": "bookworm"},
        host_inputs=dict(reversed(list(inputs().host_inputs.items()))),
        new_elements=("trove-guest", "debian-guest"),
    )
    assert list(a.elements) != list(b.elements)
    assert list(a.host_inputs) != list(b.host_inputs)
    assert layer_key(a) == layer_key(b)


def test_env_key_vs_value_not_confused():
    # {"A": "B=C"} and {"A=B": "C"} must not collide
    assert layer_key(inputs(env={"A": "B=C"})) != layer_key(inputs(env={"A=B": "C"}))


# --- tree_hash / content_hash ---------------------------------------------


def make_tree(root: Path) -> Path:
    (root / "install.d").mkdir(parents=True)
    (root / "install.d" / "50-hook").write_text("#!/bin/sh\necho hi\n")
    (root / "install.d" / "50-hook").chmod(0o755)
    (root / "element-deps").write_text("package-installs\n")
    (root / "static" / "etc").mkdir(parents=True)
    (root / "static" / "etc" / "motd").write_text("hello\n")
    return root


def test_tree_hash_independent_of_location(tmp_path):
    a = make_tree(tmp_path / "a" / "elem")
    b = tmp_path / "b" / "other-name"
    shutil.copytree(a, b)
    assert tree_hash(a) == tree_hash(b)


def test_tree_hash_ignores_mtimes(tmp_path):
    root = make_tree(tmp_path / "elem")
    before = tree_hash(root)
    for p in [root, *root.rglob("*")]:
        os.utime(p, (1_000_000, 1_000_000))
    assert tree_hash(root) == before


def test_tree_hash_sees_content(tmp_path):
    root = make_tree(tmp_path / "elem")
    before = tree_hash(root)
    (root / "static" / "etc" / "motd").write_text("hello!\n")
    assert tree_hash(root) != before


def test_tree_hash_sees_executable_bit(tmp_path):
    root = make_tree(tmp_path / "elem")
    before = tree_hash(root)
    (root / "element-deps").chmod(0o755)
    assert tree_hash(root) != before


def test_tree_hash_sees_renames(tmp_path):
    root = make_tree(tmp_path / "elem")
    before = tree_hash(root)
    (root / "install.d" / "50-hook").rename(root / "install.d" / "60-hook")
    assert tree_hash(root) != before


def test_tree_hash_sees_new_files_and_empty_dirs(tmp_path):
    root = make_tree(tmp_path / "elem")
    before = tree_hash(root)
    (root / "post-install.d").mkdir()
    after_dir = tree_hash(root)
    assert after_dir != before
    (root / ".hidden").write_text("")
    assert tree_hash(root) != after_dir


def test_tree_hash_sees_symlink_target(tmp_path):
    root = make_tree(tmp_path / "elem")
    (root / "link").symlink_to("element-deps")
    before = tree_hash(root)
    (root / "link").unlink()
    (root / "link").symlink_to("static")
    assert tree_hash(root) != before


def test_tree_hash_ignores_pycache(tmp_path):
    root = make_tree(tmp_path / "elem")
    before = tree_hash(root)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert tree_hash(root) == before


def test_content_hash_of_file_ignores_path_and_mtime(tmp_path):
    a = tmp_path / "one" / "pkgs.tar"
    b = tmp_path / "two" / "renamed.bin"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"\x00payload\xff")
    b.write_bytes(b"\x00payload\xff")
    os.utime(b, (12345, 12345))
    assert content_hash(a) == content_hash(b)
    b.write_bytes(b"\x00payload\xfe")
    assert content_hash(a) != content_hash(b)


def test_content_hash_of_dir(tmp_path):
    a = make_tree(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(a / "element-deps")
    (b / "element-deps").write_text("changed\n")
    assert content_hash(a) != content_hash(b)


# --- keys of layers already built -----------------------------------------


def test_the_engine_fingerprint_is_what_built_layers_carry():
    """Moving engine code between modules must not change any layer key. When
    the phase runner or the tidy-up after it changes, every key changes: update this on purpose."""
    from factory.plan import engine_hash

    assert engine_hash() == "0ae9cdb8ad2e0515fd517c46cf90df758fd6a75b05223a0e74b869017554f167"


def test_assembly_key_of_a_fixed_input():
    from factory.keys import assembly_key

    key = assembly_key("a" * 64, ("raw", "qcow2"), "3", "zlib", None, "b" * 64, "sha256:" + "c" * 64)
    assert key == assembly_key("a" * 64, ("qcow2", "raw"), "3", "zlib", "", "b" * 64, "sha256:" + "c" * 64)
    assert key == "bcbcfdd1410735b772ebebfc9ff5f718d536c0026109b35efe0493f19d86a612"  # as computed before the key moved to keys.py
    assert key != assembly_key("a" * 64, ("raw", "qcow2"), "3", "zlib", None, "b" * 64, "sha256:" + "c" * 64, bit_identical=True)


def test_the_disk_key_is_the_same_whatever_the_disk_is_written_as():
    from factory.keys import disk_key

    key = disk_key("a" * 64, "3", "b" * 64, "c" * 64)
    assert key == disk_key("a" * 64, "3", "b" * 64, "c" * 64)
    assert len({key, disk_key("d" * 64, "3", "b" * 64, "c" * 64), disk_key("a" * 64, None, "b" * 64, "c" * 64),
                disk_key("a" * 64, "3", "e" * 64, "c" * 64)}) == 4
