"""Installed as users install it: the built wheel, in a fresh venv, carries
everything the CLI needs (elements, layers, the builder's files, the engine's
shell scripts). Slow: pip installs the dependencies into the new venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("factory-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run([str(tmp / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True)
    return tmp / "venv" / "bin" / "factory"


def _run(factory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # Run from elsewhere, so nothing of the checkout can be found by accident.
    return subprocess.run([str(factory), *args], capture_output=True, text=True, cwd="/",
                          env={**os.environ, "ELEMENTS_PATH": "", **(env or {})}, timeout=1800)


def test_the_wheel_carries_the_data_folders(installed):
    site = next((installed.parent.parent / "lib").glob("python*/site-packages"))
    data = site / "factory" / "data"
    assert (data / "layers" / "10-base.yaml").is_file()
    assert (data / "elements" / "debian-postgresql").is_dir()
    assert (data / "containers" / "builder" / "Containerfile").is_file()
    assert os.access(site / "factory" / "engine" / "dib-phase", os.X_OK)
    assert os.access(site / "factory" / "engine" / "dib-assemble", os.X_OK)


def test_elements_runs_from_the_wheel(installed):
    run = _run(installed, "elements", "--as", "json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert {"distro": "debian", "datastore": "postgresql"}.items() <= next(
        r for r in rows if r["distro"] == "debian" and r["datastore"] == "postgresql").items()


def test_plan_without_an_engine_gets_as_far_as_the_engine(installed):
    # Keys need the builder image's id; without an engine the plan finds
    # targets, elements and layers, then says the engine is missing.
    run = _run(installed, "plan", "--distro", "debian", "--datastore", "postgresql",
               env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no container engine answers"), run.stderr


@pytest.mark.skipif(not _engine_answers(), reason="no container engine answers")
def test_plan_runs_from_the_wheel(installed):
    run = _run(installed, "plan", "--distro", "debian", "--datastore", "postgresql", "--as", "json")
    assert run.returncode == 0, run.stderr
    assert [l["layer"] for l in json.loads(run.stdout)[0]["layers"]] == ["base", "guest", "datastore"]
