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
