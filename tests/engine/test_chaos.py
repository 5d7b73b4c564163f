"""Builds, boots and uploads killed at random moments (SIGINT, SIGTERM,
SIGKILL; fixed seed) leave nothing the next run does not remove, and the
build after them makes a sound image. FACTORY_CHAOS_ROUNDS sets how many
random rounds run (1 by default, within CI's time; more for a soak)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess

import pytest

from tests.chaos import MOMENTS, Moment, kill_round
from tests.conftest import NATIVE_AGENT, edited_element, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
SEED = 18
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT]


def _elements(tmp_path) -> dict[str, str]:
    """ELEMENTS_PATH with a changed copy of the datastore element: a fresh
    datastore layer to kill during, on the suite's cached base and guest."""
    return {"ELEMENTS_PATH": str(edited_element(tmp_path, "debian-postgresql"))}


@pytest.fixture(scope="module")
def built(engine, builder, tmp_path_factory):
    """A SIGKILL in the datastore layer's install phase, then the build that
    finishes: (that round, the manifest, the env the build used)."""
    root = tmp_path_factory.mktemp("chaos")
    env = _elements(root)
    out = root / "out"
    moment = next(m for m in MOMENTS if m.name == "datastore layer: install")
    killed = kill_round(["build", *TARGET, "--output", str(out)], moment, "SIGKILL", random.Random(SEED), engine, out, env)
    run = factory("build", *TARGET, "--output", str(out), env=env, timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    return killed, out / run.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1], env


def test_sigkill_in_a_layer_leaves_nothing_and_the_next_build_is_sound(built):
    killed, manifest, _ = built
    assert killed.code == -9 and killed.leftovers == []
    man = json.loads(manifest.read_text())
    image = manifest.parent / man["images"]["qcow2"]["file"]
    assert subprocess.run(["qemu-img", "check", str(image)], capture_output=True).returncode == 0
    assert hashlib.sha256(image.read_bytes()).hexdigest() == man["images"]["qcow2"]["sha256"]
    assert not [p for p in manifest.parent.iterdir() if p.name.startswith(".")]


def test_random_kills_leave_nothing(built, engine, tmp_path):
    _, manifest, env = built
    rng = random.Random(SEED)
    rounds = int(os.environ.get("FACTORY_CHAOS_ROUNDS", "1"))
    failures = []
    for i in range(rounds):
        moment: Moment = rng.choice(MOMENTS)
        sig = rng.choice(["SIGINT", "SIGTERM", "SIGKILL"])
        out = tmp_path / f"round-{i}"
        out.mkdir()
        round_env = _elements(out / "elements") if moment.name.startswith("datastore layer") else env
        if moment.command == "build":
            args = ["build", *TARGET, "--output", str(out / "artifact")]
        elif moment.command == "verify":
            args = ["verify", str(manifest), "--timeout", "300"]
        else:
            args = ["publish", str(manifest), "--to", str(out / "artifact")]
        result = kill_round(args, moment, sig, rng, engine, out / "artifact" if moment.command != "verify" else manifest.parent,
                            round_env)
        assert result.code in (130, -9, 0), f"{moment.name} {sig}: exit {result.code}"
        if result.leftovers:
            failures.append(f"{moment.name} {sig}: {result.leftovers}")
    assert failures == []
