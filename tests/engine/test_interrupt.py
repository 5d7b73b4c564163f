"""A build killed in the middle of a layer leaves nothing behind, and the next
run reuses what was finished."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.chaos import folders_of, owned_by
from tests.conftest import NATIVE_AGENT, FACTORY, REPO, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "redis", *NATIVE_AGENT, "--format", "tar"]


def slow_redis(tmp_path: Path) -> Path:
    root = tmp_path / "elements"
    shutil.copytree(REPO / "elements" / "debian-redis", root / "debian-redis")
    hook = root / "debian-redis" / "install.d" / "99-slow-for-test"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/bash\necho slow-hook-started\nsleep 600\n")
    hook.chmod(0o755)
    return root


def leftovers(engine, pid: int, held: list[Path]) -> list[str]:
    """What the killed run still holds. The host is shared (other builds may
    run beside the suite), so only what this PID owned counts."""
    found = owned_by(pid, engine)
    found += [f"folder {f}" for f in held if f.exists()]
    found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
              if any(str(f) in line.split()[1] for f in held)]
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_kill_during_datastore_layer(engine, builder, tmp_path, sig):
    env = {**os.environ, "ELEMENTS_PATH": str(slow_redis(tmp_path))}
    key = json.loads(factory("plan", "--as", "json", *TARGET[:-2], env=env).stdout)[0]["layers"][-1]["key"]
    proc = subprocess.Popen([FACTORY, "--log-format", "json", "-v", "build", *TARGET, "--output", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    started = threading.Event()

    def watch():
        for line in proc.stdout:
            if "slow-hook-started" in line:
                started.set()

    threading.Thread(target=watch, daemon=True).start()
    assert started.wait(900), "the build never reached the datastore layer's install phase"
    held = folders_of(proc.pid)
    assert held, "the build recorded no work folder"
    proc.send_signal(sig)
    assert proc.wait(120) != 0

    assert leftovers(engine, proc.pid, held) == []
    assert not engine.images.list(name=f"factory-layer:{key}")

    # The next run (without the slow hook) reuses base and guest and finishes.
    run = factory("build", *TARGET, "--output", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    states = run.layer_states()
    assert states["base"] == "cached" and states["guest"] == "cached"


def test_ctrl_c_in_a_matrix_stops_the_assembly_under_way_and_leaves_nothing(engine, builder, tmp_path):
    """Two targets from one config: postgresql (its layers built by other
    tests) assembles a qcow2 in the background while redis's datastore layer
    builds here, held by a slow hook. Ctrl-C then stops both: the assembly's
    container is removed from this side, its loop devices and work folder
    released, and nothing is left under a final name."""
    from tests.chaos import loops_backed_by

    env = {**os.environ, "ELEMENTS_PATH": str(slow_redis(tmp_path))}
    config = tmp_path / "factory.yaml"
    config.write_text(json.dumps({"defaults": {"distro": "debian", "release": "bookworm", "agent_source": NATIVE_AGENT[1]},
                                  "targets": [{"datastore": "postgresql"}, {"datastore": "redis"}]}))
    out = tmp_path / "out"
    proc = subprocess.Popen([FACTORY, "--log-format", "json", "-v", "build", "--config", str(config), "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[str] = []
    started = threading.Event()

    def watch():
        for line in proc.stdout:
            seen.append(line)
            if "slow-hook-started" in line:
                started.set()

    threading.Thread(target=watch, daemon=True).start()
    assert started.wait(900), "the build never reached redis's datastore layer"
    assert any('"assembling"' in l for l in seen), "postgresql's assembly had not begun"
    assert not any('"artifact ready"' in l for l in seen), "postgresql's assembly was over before the interrupt"
    held = folders_of(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) != 0
    assert leftovers(engine, proc.pid, held) == []
    assert loops_backed_by(held) == []
    assert not list(out.glob("*.qcow2")) and not list(out.glob("*.manifest.json"))
