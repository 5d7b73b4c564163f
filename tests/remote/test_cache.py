"""The remote layer cache end to end, against real servers: machine A pushes
its layers; machine B (the same engine after its store lost them) pulls them
instead of building; a flipped byte is refused; an outage is only a warning;
bytes are uploaded once. Figures are printed (run with -s to see them)."""

from __future__ import annotations

import json
import tarfile

import pytest

from tests.conftest import edited_element, factory, unique_element
from tests.remote.conftest import events, forget, keys

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture(scope="module")
def machine_a(server, stack, builder, tmp_path_factory):
    """Machine A builds the target and pushes every layer the cache lacks."""
    out = tmp_path_factory.mktemp("a")
    run = factory("build", *stack, "--datastore", "postgresql", "--output", str(out), "--cache-to", server.url, *server.args,
                  env=server.env)
    assert run.returncode == 0, run.stderr[-3000:]
    pushed = events(run, "layer pushed")
    assert set(pushed) == {"base", "guest", "datastore"}, run.stderr[-3000:]
    built = events(run, "layer built")
    print(f"\n[{server.kind}] machine A: built {({k: v['seconds'] for k, v in built.items()})} "
          f"pushed {({k: (v['bytes'], v['seconds']) for k, v in pushed.items()})}")
    return {"run": run, "objects": server.objects(), "keys": keys(*stack, "--datastore", "postgresql")}


def _rootfs_has(out, pattern: str) -> bool:
    tarball = next(out.glob("debian-bookworm-*.tar"))
    return any(pattern in n for n in tarfile.open(tarball).getnames())


def test_machine_b_pulls_every_layer_and_only_assembles(server, machine_a, stack, tmp_path):
    forget(machine_a["keys"]["base"])
    run = factory("build", *stack, "--datastore", "postgresql", "--output", str(tmp_path), "--cache-from", server.url, *server.args,
                  env=server.env)
    assert run.returncode == 0, run.stderr[-3000:]
    pulled = events(run, "layer pulled")
    assert set(pulled) == {"base", "guest", "datastore"}
    assert run.layer_states() == {}  # nothing cached, nothing built
    assert {e["key"] for e in pulled.values()} == {k[:16] for k in machine_a["keys"].values()}
    assert _rootfs_has(tmp_path, "usr/lib/postgresql")
    print(f"\n[{server.kind}] machine B: pulled {({k: (v['bytes'], v['seconds']) for k, v in pulled.items()})}")
    listed = {l["key"]: l for l in json.loads(factory("layers", "ls", "--as", "json").stdout)}
    for layer, key in machine_a["keys"].items():
        assert listed[key]["layer"] == layer  # the labels came with the layer


def test_each_layers_bytes_are_uploaded_once(server, machine_a, stack, tmp_path):
    run = factory("build", *stack, "--datastore", "postgresql", "--output", str(tmp_path), "--cache-to", server.url, *server.args,
                  env=server.env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert events(run, "layer pushed") == {}
    assert set(events(run, "layer already in the cache")) == {"base", "guest", "datastore"}
    assert server.objects() == machine_a["objects"]
    stored = sum(server.objects().values())
    sent = sum(e["bytes"] for e in events(machine_a["run"], "layer pushed").values())
    print(f"\n[{server.kind}] bytes sent by machine A {sent}, stored {stored}, sent by the second build 0")


def test_second_datastore_pulls_base_and_guest_and_builds_its_own(server, machine_a, stack, tmp_path):
    forget(machine_a["keys"]["base"])
    env = {**server.env, "ELEMENTS_PATH": str(edited_element(tmp_path, "debian-redis"))}
    run = factory("build", *stack, "--datastore", "redis", "--output", str(tmp_path / "out"), "--cache-from", server.url,
                  *server.args, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert set(events(run, "layer pulled")) == {"base", "guest"}
    assert run.layer_states() == {"datastore": "built"}
    assert _rootfs_has(tmp_path / "out", "usr/bin/redis-server")


def test_a_flipped_byte_is_refused_and_the_layer_rebuilt(server, machine_a, stack, tmp_path):
    """On a datastore layer of this test's own bytes: layers are reproducible,
    and an engine that holds the same bytes under another key (other tests
    build this datastore) skips their download, so a flipped byte in the cache
    would never be read."""
    env = {**server.env, "ELEMENTS_PATH": str(unique_element(tmp_path, "debian-postgresql"))}
    args = [*stack, "--datastore", "postgresql"]
    key = keys(*args, env=env)["datastore"]
    first = factory("build", *args, "--output", str(tmp_path / "first"), "--cache-to", server.url, *server.args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert set(events(first, "layer pushed")) == {"datastore"}, first.stderr[-3000:]
    forget(key)
    digest = server.tamper(key)
    run = factory("build", *args, "--output", str(tmp_path), "--cache-from", server.url, "--cache-to", server.url,
                  *server.args, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    refused = events(run, "layer refused: it does not match its recorded digest; building it instead")
    assert set(refused) == {"datastore"}, run.stderr[-3000:]
    assert refused["datastore"]["level"] == "warning"
    assert "datastore" not in events(run, "layer pulled")
    assert run.layer_states()["datastore"] == "built"
    assert _rootfs_has(tmp_path, "usr/lib/postgresql")
    assert set(events(run, "layer pushed")) == {"datastore"}  # the corrupt copy is replaced
    forget(key)
    print(f"\n[{server.kind}] flipped a byte of {digest[:19]}: {refused['datastore']['reason']}")
