"""A layer follows from its key: `factory verify-layer` rebuilds the native
postgresql datastore layer from its cached parent, under a scratch name, and
finds the same diff digest. That layer is the one the package install filled
with per-machine state (PostgreSQL's cluster, ssl-cert's snakeoil key pair),
now made at first boot instead."""

from __future__ import annotations

import json

import pytest

from tests.conftest import NATIVE_AGENT, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT]


def test_the_datastore_layer_rebuilds_to_the_same_bytes(builder):
    plan = factory("plan", *TARGET, "--as", "json")
    assert plan.returncode == 0, plan.stderr[-3000:]
    layers = {l["layer"]: l["key"] for l in json.loads(plan.stdout)[0]["layers"]}
    built = factory("build", *TARGET, "--layer", layers["datastore"][:16], timeout=3600)
    assert built.returncode == 0, built.stderr[-3000:]
    run = factory("verify-layer", layers["datastore"][:16], *TARGET, timeout=3600)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    cached, rebuilt = (line.split(":", 1)[1].split() for line in run.stdout.splitlines()[1:3])
    assert cached == rebuilt and cached and run.stdout.splitlines()[-1] == "match"
    print("\n" + run.stdout)
