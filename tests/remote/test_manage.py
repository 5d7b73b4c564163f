"""`factory layers ls/push/pull/prune` against a cache, with three tiny layers
made for the test (no build): an old base, an old leaf on it, and a young leaf (5 s younger)
on it that keeps the base alive through a prune."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time

import pytest

from tests.conftest import FACTORY, factory
from tests.remote.conftest import OciServer, S3Server
from tests.servers.registry import Registry

pytestmark = [pytest.mark.engine]


def _tar(name: str, text: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    return out.getvalue()


def _labels(key: str, layer: str, parent: str = "") -> dict[str, str]:
    return {"org.factory.key": key, "org.factory.layer": layer, "org.factory.parent": parent, "org.factory.target": "test"}


@pytest.fixture(params=["oci", "s3"])
def server(request, tmp_path):
    """A cache of its own: a prune here must not reach the other tests' layers."""
    if request.param == "s3":
        yield S3Server(request.getfixturevalue("swift_server"), prefix=f"manage-{os.urandom(4).hex()}")
        return
    registry = Registry(tmp_path).start()
    yield OciServer(registry)
    registry.stop()


@pytest.fixture
def tiny_layers(engine):
    keys = {name: hashlib.sha256(os.urandom(16)).hexdigest() for name in ("base", "old", "young")}
    base = keys["base"]
    engine.api.import_image_from_data(_tar("base.txt", base), repository="factory-layer", tag=base,
                                      changes=["LABEL " + " ".join(f'{k}="{v}"' for k, v in _labels(base, "base").items())])

    def child(name: str) -> None:
        container = engine.containers.create(f"factory-layer:{base}", command=["none"])
        container.put_archive("/", _tar(f"{name}.txt", keys[name]))
        container.commit(repository="factory-layer", tag=keys[name], conf={"Labels": _labels(keys[name], name, base)})
        container.remove()

    child("old")
    time.sleep(5)
    child("young")
    keys["young made"] = time.time()
    yield keys
    for name in ("young", "old", "base"):  # children first: they hold the base
        try:
            engine.images.remove(f"factory-layer:{keys[name]}")
        except Exception:  # noqa: BLE001 - already gone is fine
            pass


def test_push_ls_pull_and_prune_a_cache(server, tiny_layers, engine):
    keys, env, args = tiny_layers, server.env, server.args
    for leaf in ("old", "young"):
        run = factory("layers", "push", keys[leaf][:20], "--to", server.url, *args, env=env)
        assert run.returncode == 0, run.stderr
    assert f"present base {keys['base']}" in run.stdout and f"pushed young {keys['young']}" in run.stdout
    listed = json.loads(factory("layers", "ls", "--remote", server.url, "--as", "json", *args, env=env).stdout)
    mine = {l["key"]: l for l in listed}
    assert {l["layer"] for l in mine.values()} == {"base", "old", "young"}
    assert mine[keys["young"]]["parent"] == keys["base"]

    engine.images.remove(f"factory-layer:{keys['young']}")
    run = factory("layers", "pull", keys["young"][:20], "--from", server.url, *args, env=env)
    assert run.returncode == 0, run.stderr
    assert engine.images.get(f"factory-layer:{keys['young']}").labels["org.factory.key"] == keys["young"]

    # An age between the two leaves': the old one (5 s older) goes, the young one stays.
    age = f"{int(time.time() - keys['young made']) + 3}s"
    run = factory("layers", "prune", "--remote", server.url, "--older-than", age, *args, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["removed", "old", keys["old"]]  # the base stays: the young leaf builds on it
    listed = json.loads(factory("layers", "ls", "--remote", server.url, "--as", "json", *args, env=env).stdout)
    assert {l["key"] for l in listed} == {keys["base"], keys["young"]}


def test_a_missing_layer_and_a_bad_url_are_one_line_errors(server):
    run = factory("layers", "pull", "0" * 64, "--from", server.url, *server.args, env=server.env)
    assert run.returncode == 2 and run.stderr.strip().startswith("error:") and "has no layer" in run.stderr
    run = factory("layers", "ls", "--remote", "registry:5000/x")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "oci://HOST[:PORT]/REPO" in run.stderr


def test_two_machines_pushing_one_key_at_once_leave_one_good_copy(server, tiny_layers, engine):
    key = tiny_layers["young"]
    cmd = [FACTORY, "layers", "push", key, "--to", server.url, *server.args]
    pushes = [subprocess.Popen(cmd, env={**os.environ, **server.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for p in pushes:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    listed = json.loads(factory("layers", "ls", "--remote", server.url, "--as", "json", *server.args, env=server.env).stdout)
    assert sorted(l["key"] for l in listed) == sorted([key, tiny_layers["base"]])
    engine.images.remove(f"factory-layer:{key}")
    run = factory("layers", "pull", key, "--from", server.url, *server.args, env=server.env)
    assert run.returncode == 0, run.stderr
    assert engine.images.get(f"factory-layer:{key}").labels["org.factory.key"] == key
