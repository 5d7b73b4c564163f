"""Assembly into a bootable qcow2, and `factory verify` booting it for real."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NATIVE_AGENT, REPO, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT]


def loops_and_mounts() -> list[str]:
    from factory.settings import state_dir

    state = str(state_dir())
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines()
    mounts = [l for l in Path("/proc/mounts").read_text().splitlines() if state in l]
    mapper = [p.name for p in Path("/dev/mapper").glob("loop*")]
    # A loop set up in the builder shows, from the host, a path relative to its bind mount.
    return [l for l in loops if state in l or "image0.raw" in l] + mounts + mapper


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, builder):
    out = tmp_path_factory.mktemp("out")
    run = factory("build", *TARGET, "--output", str(out))
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = Path(run.stdout.strip().splitlines()[-1])
    return out, manifest


def test_build_writes_qcow2_sha256_and_manifest(artifact):
    out, manifest_path = artifact
    manifest = json.loads(manifest_path.read_text())
    image = out / manifest["images"]["qcow2"]["file"]
    assert image.name.startswith("debian-bookworm-postgresql-")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert manifest["images"]["qcow2"]["sha256"] == digest
    assert (out / f"{image.name}.sha256").read_text().split()[0] == digest
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0 and "No errors were found" in check.stdout
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(image)], capture_output=True, text=True).stdout)
    assert info["format-specific"]["data"]["compat"] == "1.1"
    layers = {l["layer"]: l for l in manifest["layers"]}
    assert list(layers) == ["base", "guest", "datastore"]
    assert any(p.startswith("postgresql=") for p in layers["datastore"]["packages_added"])
    assert manifest["tools"]["diskimage-builder"] == "3.43.0"


def test_unchanged_target_is_not_assembled_again(artifact):
    out, manifest_path = artifact
    before = manifest_path.stat().st_mtime
    run = factory("build", *TARGET, "--output", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    assert any(e.get("event") == "artifact already there; nothing to assemble" for e in run.events())
    assert manifest_path.stat().st_mtime == before


def test_a_second_assembly_of_one_disk_gives_the_same_tree_and_disk_and_bit_identical_orders_the_qcow2(artifact, tmp_path):
    """Image tier 2: the finalised tree is tidied and clamped, and the
    filesystem (UUID from the disk key, written again by mke2fs -d at the
    epoch), so the disk, is the same. The second assembly (a new assembly key: other
    formats, --bit-identical) writes its qcow2 in disk order; the module's
    default build wrote its own as the clusters finished."""
    first_out, first_manifest = artifact
    run = factory("build", *TARGET, "--format", "raw,qcow2", "--bit-identical", "--output", str(tmp_path))
    assert run.returncode == 0, run.stderr[-4000:]
    one = json.loads(first_manifest.read_text())
    two = json.loads(Path(run.stdout.strip().splitlines()[-1]).read_text())
    assert one["images"]["qcow2"]["sha256"] != two["images"]["qcow2"]["sha256"]  # two files, in other orders
    qcow2 = [first_out / one["images"]["qcow2"]["file"], tmp_path / two["images"]["qcow2"]["file"]]
    said = factory("diff", *map(str, qcow2))
    assert said.returncode == 0 and "disks identical" in said.stdout, said.stdout + said.stderr
    raw = tmp_path / two["images"]["raw"]["file"]
    same = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(qcow2[0]), str(raw)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    # In disk order: each compressed cluster is stored after the one before it.
    offsets = qcow2_host_offsets(qcow2[1])
    assert len(offsets) > 1000 and offsets == sorted(offsets)
    assert qcow2_host_offsets(qcow2[0]) != sorted(qcow2_host_offsets(qcow2[0]))  # as they finished


def qcow2_host_offsets(path: Path) -> list[int]:
    """Where each compressed guest cluster is stored in a qcow2 file, in guest
    order (qcow2's L1/L2 tables; `qemu-img map` gives no offset for them).
    Clusters that did not compress are stored whole, cluster-aligned, and
    are left out: the compressed bytes after them may fill an earlier gap."""
    data = path.read_bytes()
    cluster_bits, = struct.unpack_from(">I", data, 20)
    l1_size, l1_offset = struct.unpack_from(">IQ", data, 36)
    compressed_bits = 62 - (cluster_bits - 8)
    offsets = []
    for l1 in struct.unpack_from(f">{l1_size}Q", data, l1_offset):
        l2_offset = l1 & 0x00FFFFFFFFFFFE00
        if not l2_offset:
            continue
        for entry in struct.unpack_from(f">{(1 << cluster_bits) // 8}Q", data, l2_offset):
            if entry & (1 << 62):
                offsets.append(entry & ((1 << compressed_bits) - 1))
    return offsets


def test_too_small_image_size_fails_clearly_and_leaves_nothing(tmp_path, builder):
    # Above the fixed 1G floor, below what this target's tree needs.
    run = factory("build", *TARGET, "--image-size", "1G", "--output", str(tmp_path))
    assert run.returncode != 0
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert errors and "too small" in errors[0] and "needs at least" in errors[0]
    assert loops_and_mounts() == []
    assert not list(tmp_path.glob("*.qcow2*"))


def test_verify_boots_the_image_and_passes(artifact):
    out, manifest_path = artifact
    run = factory("verify", str(manifest_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for check in ("booted", "ConfigDrive", "guest_info.conf", "guest agent", "datastore service"):
        assert check in run.stdout
    assert "FAIL" not in run.stdout


def test_verify_fails_clearly_on_an_image_that_does_not_boot(tmp_path):
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "1G"], check=True)
    run = factory("verify", str(blank), "--datastore", "postgresql", "--timeout", "45")
    assert run.returncode == 4  # verify failure (README: exit codes)
    assert "FAIL" in run.stdout and "no login prompt" in run.stdout
    assert (tmp_path / "blank.qcow2.console.log").exists()


def test_verify_reports_an_inactive_datastore(tmp_path, builder):
    layers = tmp_path / "layers"
    layers.mkdir()
    (layers / "40-break.yaml").write_text(
        "name: break\nphases: [post-install]\nelements: [test-datastore-off]\n"
    )
    env = {"FACTORY_LAYERS_PATH": str(layers), "ELEMENTS_PATH": str(REPO / "tests" / "elements")}
    # raw: a bootable disk without the qcow2's compression, which this test does not need
    run = factory("build", *TARGET, "--format", "raw", "--output", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = run.stdout.strip().splitlines()[-1]
    run = factory("verify", manifest)
    assert run.returncode == 4  # verify failure (README: exit codes)
    row = {name: next(l for l in run.stdout.splitlines() if name in l) for name in ("datastore service active", "booted")}
    assert "FAIL" in row["datastore service active"]
    assert "pass" in row["booted"]
    assert Path(manifest.replace(".manifest.json", ".raw.console.log")).exists()


def test_without_guest_info_the_agent_does_not_start(artifact):
    out, manifest_path = artifact
    run = factory("verify", str(manifest_path), "--no-guest-info")
    assert run.returncode == 4  # verify failure (README: exit codes)
    row = {name: next(l for l in run.stdout.splitlines() if name in l)
           for name in ("booted", "guest agent service started", "datastore service active")}
    assert "pass" in row["booted"] and "pass" in row["datastore service active"]
    assert "FAIL" in row["guest agent service started"] and "inactive" in row["guest agent service started"]
    assert "FAIL" in next(l for l in run.stdout.splitlines() if "guest_info.conf present" in l)
    assert "guest_info missing" in run.stdout


def test_a_terminated_verify_leaves_no_qemu_behind(tmp_path):
    import signal
    import time

    from tests.conftest import FACTORY

    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "1G"], check=True)
    proc = subprocess.Popen([FACTORY, "verify", str(blank), "--datastore", "postgresql", "--accel", "tcg", "--timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def guests() -> list[str]:
        """This verify's qemu: a child of the factory process."""
        return subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "qemu-system-x86_64"],
                              capture_output=True, text=True).stdout.split()

    deadline = time.monotonic() + 30
    while not guests() and time.monotonic() < deadline:
        time.sleep(0.5)
    started = guests()
    assert started, "qemu never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err
    assert [p for p in started if Path(f"/proc/{p}").exists()] == []


def test_a_loop_device_left_in_the_builder_is_released_from_the_host(engine, builder):
    """The safety net behind an interrupted assembly: a loop attached inside
    the builder (through a bind mount, so the host sees another path) is
    found by its backing file and detached."""
    import uuid

    import docker

    from factory.assemble import release_loops
    from factory.settings import state_dir

    work = state_dir() / "work" / f"loop-test-{uuid.uuid4().hex[:8]}"
    (work / "image").mkdir(parents=True)
    (work / "image" / "image0.raw").write_bytes(b"\0" * 2**20)
    try:
        out = engine.containers.run(
            builder.tag, ["losetup", "-f", "--show", "/tmp/factory/work/image/image0.raw"], remove=True, entrypoint=[],
            cap_add=["SYS_ADMIN"], device_cgroup_rules=["b 7:* rwm", "c 10:237 rwm"], security_opt=["apparmor=unconfined"],
            mounts=[docker.types.Mount("/dev", "/dev", type="bind"), docker.types.Mount("/tmp/factory/work", str(work), type="bind")],
        ).decode().strip()
        assert out.startswith("/dev/loop")
        assert release_loops(work) == [out]
        assert out not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    finally:
        release_loops(work)
        subprocess.run(["rm", "-rf", str(work)])
