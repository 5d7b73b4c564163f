"""The builder image carries the tools DIB's phases need, and is reused by tag."""

import pytest

from factory.engine.docker import run_output

from factory.engine.builder import ensure_builder
from factory.trust import host_trust

pytestmark = pytest.mark.engine


@pytest.mark.parametrize(
    "command, expect",
    [
        ("disk-image-create --version", "3.43.0"),
        ("dib-run-parts 2>&1 | head -1", "Usage: dib-run-parts"),
        ("qemu-img --version", "qemu-img version"),
        ("debootstrap --version", "debootstrap"),
        ("/usr/sbin/kpartx 2>&1 | head -1", "multipath-tools"),
        ("kpartx -d /nonexistent 2>&1; true", "no block device"),
        ("mkfs.ext4 -V 2>&1", "mke2fs"),
        ("grub-install --version", "grub-install"),
    ],
)
def test_builder_has_the_tools(engine, builder, command, expect):
    out = run_output(builder.tag, ["bash", "-c", command])
    assert expect.lower() in out.decode().lower()


def test_builder_runs_dib_run_parts_over_hooks(engine, builder, tmp_path):
    hooks = tmp_path / "install.d"
    hooks.mkdir()
    (hooks / "10-first").write_text("#!/bin/bash\necho first >> /out/order\n")
    (hooks / "20-second").write_text("#!/bin/bash\necho second >> /out/order\n")
    for h in hooks.iterdir():
        h.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    engine.containers.run(
        builder.tag, ["dib-run-parts", "/hooks/install.d"], remove=True, entrypoint=[],
        volumes={str(tmp_path): {"bind": "/hooks", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
    )
    assert (out / "order").read_text().split() == ["first", "second"]


def test_second_builder_build_reuses_the_image(builder):
    again = ensure_builder(host_trust())
    assert again.built is False
    assert again.id == builder.id


def test_host_ca_never_lands_in_the_builder(engine, builder):
    # The CA bundle is a build secret; the image must not carry a copy under the secret path.
    out = run_output(builder.tag, ["bash", "-c", "ls /run/secrets 2>/dev/null | wc -l"])
    assert out.decode().strip() == "0"
