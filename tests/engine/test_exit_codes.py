"""Exit codes a CI system acts on (README: exit codes), each produced for
real. Here: 3 (an element's hook failed) and 5 (the publish destination
refused). Elsewhere: 2 in tests/unit/test_bad_input.py, 4 in
tests/engine/test_assemble.py (an image that does not boot), 6 in
tests/engine/test_cli.py (no mirror answers) and tests/remote/test_outage.py
(a required cache stopped), 130 in tests/engine/test_assemble.py (a verify
stopped by SIGTERM)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.bad_inputs import _artifact
from tests.conftest import NATIVE_AGENT, REPO, factory

# The suite's usual stack: base, guest and datastore are most likely in the
# local store, so only the failing layer runs.
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT, "--format", "tar"]


@pytest.mark.engine
@pytest.mark.slow
def test_a_failing_hook_exits_3_with_the_tail_of_its_log_and_its_path(tmp_path, builder):
    layers = tmp_path / "layers"
    layers.mkdir()
    (layers / "40-fail.yaml").write_text("name: fail\nphases: [post-install]\nelements: [test-hook-fails]\n")
    env = {"FACTORY_LAYERS_PATH": str(layers), "ELEMENTS_PATH": str(REPO / "tests" / "elements")}
    run = factory("build", *TARGET, "--output", str(tmp_path / "out"), "--progress", "json", env=env)
    assert run.returncode == 3, run.stderr[-3000:]  # build failure (README: exit codes)
    errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
    assert errors[0] == "error: fail: post-install.d failed (exit 1); last lines:"
    assert "error: test-hook-fails: this hook fails on purpose" in errors
    assert errors[-1].startswith("error: full log: ")
    log = Path(errors[-1].removeprefix("error: full log: "))
    assert "test-hook-fails: this hook fails on purpose" in log.read_text()
    # --progress json: the failed step, its log and tail, on stdout
    events = [json.loads(line) for line in run.stdout.splitlines()]
    (failed,) = [e for e in events if e["state"] == "failed"]
    assert (failed["layer"], failed["phase"], failed["path"]) == ("fail", "post-install", str(log))
    assert "test-hook-fails: this hook fails on purpose" in failed["tail"]
    assert [e["state"] for e in events if e["layer"] == "fail"] == ["running", "failed"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing assembled


def test_a_destination_that_refuses_the_artifact_exits_5(tmp_path):
    image = tmp_path / "made.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    _artifact(tmp_path, "debian-bookworm-postgresql-1", image.read_bytes())
    (tmp_path / "a-file").write_text("not a folder\n")
    run = factory("publish", str(tmp_path / "debian-bookworm-postgresql-1.manifest.json"),
                  "--to", str(tmp_path / "a-file" / "images"))
    assert run.returncode == 5, run.stderr[-2000:]  # publish failure (README: exit codes)
    errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: publishing to {tmp_path / 'a-file' / 'images'} failed:")
    assert "Not a directory" in errors[0] and "writable" in errors[0]
