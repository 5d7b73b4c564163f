"""Shared fixtures. Engine tests use the real Docker Engine and the real
builder image; layers built by one test are reused by the next (the cache is
the product), so the slow suite costs one cold build, not one per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Native datastores are driven by guest agents before Trove 14; 13.0.1 is the
# last of them (current agents run the datastore in a container).
NATIVE_AGENT = ["--agent-source", "pypi:13.0.1"]
FACTORY = str(Path(sys.executable).parent / "factory")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def events(self) -> list[dict]:
        """Log events from --log-format json (one JSON object a line, stderr)."""
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def layer_states(self) -> dict[str, str]:
        states = {}
        for e in self.events():
            if e.get("event") == "layer cached":
                states[e["layer"]] = "cached"
            elif e.get("event") == "layer built":
                states[e["layer"]] = "built"
        return states


def factory(*args: str, env: dict[str, str] | None = None, timeout: int = 1800) -> Run:
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([FACTORY, "--log-format", "json", *args], capture_output=True, text=True, env=full_env, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def engine():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"no Docker Engine answers ({e}); run the tests through ./test.sh, which starts one")
    return client


@pytest.fixture(scope="session")
def builder(engine):
    from factory.engine.builder import ensure_builder
    from factory.trust import host_trust

    return ensure_builder(host_trust())


def closed_mirror_repos(folder: Path) -> Path:
    """A folder with one .repo file whose mirror is a loopback port nothing
    listens on: a connection to it is refused at once."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (folder / "mirror.repo").write_text(f"[fedora]\nbaseurl=http://127.0.0.1:{port}/fedora/\n")
    return folder


def edited_element(tmp_path: Path, name: str) -> Path:
    """A copy of one of the repo's elements with one file changed, on ELEMENTS_PATH."""
    root = tmp_path / "elements"
    shutil.copytree(REPO / "elements" / name, root / name)
    readme = root / name / "README.rst"
    # A new change every run: layers from earlier runs stay in the store.
    readme.write_text(readme.read_text() + f"\nA local change ({uuid.uuid4()}).\n")
    return root


def unique_element(tmp_path: Path, name: str) -> Path:
    """A copy of one of the repo's elements whose layer holds bytes no other
    layer has (a hook writes a fresh id into the tree): layers are
    reproducible, so an engine holding the same bytes under another key would
    never fetch them from a cache."""
    root = edited_element(tmp_path, name)
    hook = root / name / "post-install.d" / "99-factory-test-unique"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/bash\necho {uuid.uuid4()} > /etc/factory-test-unique\n")
    hook.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory):
    """A real one-node Swift with the S3 API on 127.0.0.1 (tests/servers/swift.py),
    stopped at the end of the session."""
    from tests.servers import swift

    with swift.running(tmp_path_factory.mktemp("swift")) as server:
        yield server


@pytest.fixture(scope="session")
def glance_server(tmp_path_factory):
    """A real standalone Glance on 127.0.0.1 (tests/servers/glance.py), stopped
    at the end of the session."""
    from tests.servers import glance

    with glance.running(tmp_path_factory.mktemp("glance")) as server:
        yield server
