"""`factory verify --trove`: Trove's own guest API client drives a booted
guest over a real RabbitMQ, as TaskManager drives a new instance, and the
created user logs in from the host through the datastore's own client.

Native mode needs an agent of the native era (13.0.1) on a Python it runs on:
debian bullseye (3.9). Of the datastores its archive ships, that agent can
drive redis (not MariaDB 10.5, which it cannot see running, nor PostgreSQL 13,
which its template does not start: layers/_agents.yaml).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NATIVE_AGENT, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
NATIVE = ["--distro", "debian", "--release", "bullseye", "--datastore", "redis", *NATIVE_AGENT]


def processes(name: str) -> list[str]:
    """Running processes of that name. Zombies are left out: they run
    nothing, and this machine's PID 1 does not reap the orphans it adopts
    (qemu's guestfwd socats end up there)."""
    found = subprocess.run(["pgrep", "-a", name], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if not line.endswith("<defunct>")]


def leftovers() -> list[str]:
    return processes("beam.smp") + processes("epmd") + processes("socat") + processes("qemu-system")


@pytest.fixture(scope="module")
def native_image(tmp_path_factory, builder):
    out = tmp_path_factory.mktemp("out")
    run = factory("build", *NATIVE, "--output", str(out))
    assert run.returncode == 0, run.stderr[-4000:]
    return Path(run.stdout.strip().splitlines()[-1])


def test_trove_prepares_redis_and_a_client_logs_in_from_the_host(native_image):
    before = leftovers()
    run = factory("verify", "--trove", str(native_image), timeout=2400)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    report = json.loads(native_image.with_name(native_image.name.replace(".manifest.json", ".qcow2.trove.json")).read_text())
    calls = {c["check"].split(" (")[0].removeprefix("trove: "): c for c in report["calls"]}
    for call in ("rpc_ping", "prepare", "enable_root_with_password", "get_volume_info", "login from the host",
                 "restart", "rpc_ping after restart", "login after restart"):
        assert calls[call]["passed"], (call, calls[call])
    assert "running" in calls["prepare"]["evidence"]
    assert calls["login from the host"]["evidence"].endswith("-> 42")
    assert report["rpc_cap"] == "1.0" and report["delivery"] == "files"
    for check in ("NIC has an address from DHCP", "localhost resolves", "database answers select 40+2 in the guest"):
        assert check in run.stdout
    assert leftovers() == before


def test_a_guest_given_another_key_fails_at_prepare(native_image):
    """The config arrives as cloud-config user data (current Trove's way);
    Trove encrypts with a key the guest was not given. The guest still
    answers rpc_ping (Trove's serializer passes what it cannot decrypt on as
    it is), but prepare never begins: verify fails there, not at boot, and
    shows the agent's own error."""
    from factory import conformance, manifest as manifests, verify as verifying

    image, man = manifests.artifact_for(native_image)
    guest = verifying.guest_from_manifest(man)
    report = conformance.verify_with_trove(image, guest, man, delivery="cloud-config",
                                           key_override="not-the-guests-key", first_heartbeat=30, accel="tcg")
    by_name = {c.name.split(" (")[0]: c for c in report.checks}
    assert by_name["guest_info.conf present with the injected content"].passed
    assert by_name["guest agent service started"].passed
    assert by_name["trove: rpc_ping"].passed
    prepare = by_name["trove: prepare"]
    assert not prepare.passed and not report.passed
    assert "no heartbeat" in prepare.evidence and "notification" in prepare.evidence


def test_build_verify_lets_current_trove_prepare_postgresql_in_a_container(builder, tmp_path):
    """The user's own command, with no registry reachable: the current agent
    (26.x), postgres built from the distro archive and preloaded, and
    `--verify` lets Trove prepare it (config delivered as cloud-config, RPC
    1.1 with ds_version); the created user logs in from the host."""
    before = leftovers()
    run = factory("build", "--distro", "debian", "--datastore", "postgresql", "--verify",
                  "--output", str(tmp_path), timeout=3600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("*.qcow2.trove.json")).read_text())
    calls = {c["check"].split(" (")[0].removeprefix("trove: "): c for c in report["calls"]}
    for call in ("rpc_ping", "prepare", "list_databases", "list_users", "create_database listed",
                 "get_volume_info", "login from the host", "restart", "login after restart"):
        assert calls[call]["passed"], (call, calls[call])
    assert "healthy" in calls["prepare"]["evidence"]
    assert calls["login from the host"]["evidence"].endswith("-> 42")
    assert report["delivery"] == "cloud-config" and report["rpc_cap"] == "latest"
    assert leftovers() == before
