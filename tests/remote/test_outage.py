"""A cache that goes away: the build finishes locally with a warning, unless
the cache is required."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.conftest import FACTORY, NATIVE_AGENT, Run, edited_element, factory
from tests.remote.conftest import events
from tests.servers.registry import Registry

pytestmark = [pytest.mark.engine, pytest.mark.slow]
# The suite's usual stack: its base and guest are most likely in the local
# store already, and the registry is gone before anything is pushed.
TARGET = ["--distro", "debian", "--release", "bookworm", *NATIVE_AGENT, "--format", "tar"]


@pytest.fixture
def doomed_registry(tmp_path_factory):
    server = Registry(tmp_path_factory.mktemp("doomed")).start()
    yield server
    server.stop()


def test_registry_stopped_mid_build_leaves_a_warning_and_a_good_image(doomed_registry, builder, tmp_path):
    env = {**os.environ, "ELEMENTS_PATH": str(edited_element(tmp_path, "debian-redis"))}
    url = doomed_registry.url
    cmd = [FACTORY, "--log-format", "json", "build", *TARGET, "--datastore", "redis", "--output", str(tmp_path / "out"),
           "--cache-from", url, "--cache-to", url]
    p = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, stopped = [], None
    for line in p.stderr:
        lines.append(line)
        if '"building layer"' in line and '"datastore"' in line:
            doomed_registry.stop()  # the cache answered the lookups, then it is gone
            stopped = time.monotonic()
    out = p.stdout.read()
    p.wait(timeout=1800)
    run = Run(p.returncode, out, "".join(lines))
    assert run.returncode == 0, run.stderr[-3000:]
    assert stopped is not None, "the datastore layer was not built"
    assert run.layer_states()["datastore"] == "built"
    warnings = [e for e in run.events() if e.get("event") == "cache unreachable; going on without it"]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning" and warnings[0]["cache"] == url
    assert events(run, "layer pushed") == {}
    print(f"\noutage: build finished {time.monotonic() - stopped:.0f}s after the registry stopped: {warnings[0]['reason']}")

    required = factory("build", *TARGET, "--datastore", "redis", "--output", str(tmp_path / "out2"),
                       "--cache-to", url, "--cache-required", env=env)
    assert required.returncode == 6  # infrastructure unavailable: a required cache (README: exit codes)
    errors = [l for l in required.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and url in errors[0] and "--cache-required" in errors[0], required.stderr[-2000:]

