"""The build graph of a matrix: each distinct layer key once, after the
layers it builds on; one job per target; what a cache holds left out."""

from __future__ import annotations

from collections import Counter

import pytest

import factory.plan as plan_mod
from factory import containers
from factory.errors import UsageError
from factory.graph import Jobs, LayerRef, Stack, build_graph, stack_of
from factory.plan import plan_stack

BUILDER = "sha256:test"
DISTROS = ("debian", "ubuntu")
DATASTORES = ("postgresql", "mariadb", "redis")
CACHE = "oci://127.0.0.1:5000/factory/layers"


@pytest.fixture(autouse=True)
def no_host_mirrors(monkeypatch):
    monkeypatch.setattr(plan_mod, "host_mirrors", lambda distro, *a, **kw: {})
    monkeypatch.setattr("factory.mirrors.host_mirrors", lambda distro, *a, **kw: {})


@pytest.fixture
def matrix(target, paths):
    """The stacks of 2 distros x 3 datastores, as `factory plan --emit` makes them."""
    return [stack_of(plan_stack(target(d, s), BUILDER, paths), []) for d in DISTROS for s in DATASTORES]


def jobs(**kw) -> Jobs:
    return Jobs(config="factory.yaml", **kw)


def test_two_distros_three_datastores(matrix):
    graph = build_graph(matrix, set(), jobs())
    assert Counter(n.layer for n in graph.layers) == {"base": 2, "guest": 2, "datastore": 6}
    assert len(graph.targets) == 6 and graph.reused == []
    by_key = {n.key: n for n in graph.layers}
    assert len(by_key) == 10  # each key once
    ids = {n.id: n for n in graph.layers}
    for node in graph.layers:
        parent = {"base": None, "guest": "base", "datastore": "guest"}[node.layer]
        assert [ids[i].layer for i in node.needs] == ([parent] if parent else [])
        # a layer's job comes after the jobs it needs
        assert all(graph.layers.index(ids[i]) < graph.layers.index(node) for i in node.needs)
    for distro in DISTROS:
        (base,) = [n for n in graph.layers if n.layer == "base" and n.targets[0].startswith(distro)]
        assert len(base.targets) == 3 and all(t.startswith(distro) for t in base.targets)
    for node in graph.targets:
        (top,) = node.needs
        assert ids[top].layer == "datastore" and ids[top].targets == [node.target] and ids[top].key == node.top


def test_commands_name_the_node_and_the_same_cache_everywhere(matrix):
    graph = build_graph(matrix, set(), jobs(cache_from=(CACHE,), cache_to=CACHE, verify=True, publish=("glance",)))
    cache = ["--cache-from", CACHE, "--cache-to", CACHE, "--cache-required"]
    for node in graph.layers:
        assert node.command == ["factory", "build", "--config", "factory.yaml", "--layer", node.key[:16], *cache]
    for node in graph.targets:
        assert node.command == ["factory", "build", "--config", "factory.yaml", "--target", node.target, *cache,
                                "--verify", "--publish", "glance"]


def test_layers_a_cache_holds_are_left_out(matrix):
    full = build_graph(matrix, set(), jobs())
    debian_base = next(n for n in full.layers if n.layer == "base" and n.targets[0].startswith("debian"))
    debian_guest = next(n for n in full.layers if n.needs == [debian_base.id])
    graph = build_graph(matrix, {debian_base.key, debian_guest.key}, jobs())
    assert Counter(n.layer for n in graph.layers) == {"base": 1, "guest": 1, "datastore": 6}
    assert {r["layer"]: len(r["targets"]) for r in graph.reused} == {"base": 3, "guest": 3}
    debian = [n for n in graph.layers if n.layer == "datastore" and n.targets[0].startswith("debian")]
    assert len(debian) == 3 and all(n.needs == [] for n in debian)  # they pull the guest layer


def test_a_target_whose_top_is_cached_needs_no_layer_job():
    stack = Stack("t", (LayerRef("base", "a" * 64), LayerRef("guest", "b" * 64, ("a" * 64,))))
    graph = build_graph([stack], {"a" * 64, "b" * 64}, jobs())
    assert graph.layers == [] and graph.targets[0].needs == []


def test_targets_of_one_name_are_refused(matrix):
    with pytest.raises(UsageError, match="appear more than once"):
        build_graph([matrix[0], matrix[0]], set(), jobs())


def test_json_is_the_documented_schema(matrix):
    data = build_graph(matrix, set(), jobs(cache_to=CACHE, cache_from=(CACHE,))).to_json()
    assert set(data) == {"schema", "config", "cache", "layers", "targets", "reused"}
    assert data["schema"] == 1 and data["cache"] == {"from": [CACHE], "to": CACHE}
    assert set(data["layers"][0]) == {"id", "layer", "key", "needs", "targets", "command"}
    assert set(data["targets"][0]) == {"id", "target", "top", "needs", "output", "verify", "publish", "command"}


def test_container_mode_images_are_nodes_the_datastore_layer_needs(target, paths):
    stacks = []
    for datastore in ("postgresql", "mariadb"):
        t, sources = containers.with_images(target("debian", datastore, datastore_mode="container",
                                                   datastore_image="distro"))
        stacks.append(stack_of(plan_stack(t, BUILDER, paths), sources))
    graph = build_graph(stacks, set(), jobs())
    assert Counter(n.layer for n in graph.layers) == {"datastore-image": 2, "base": 1, "guest": 1, "datastore": 2}
    ids = {n.id: n for n in graph.layers}
    for node in (n for n in graph.layers if n.layer == "datastore"):
        assert sorted(ids[i].layer for i in node.needs) == ["datastore-image", "guest"]
        (image,) = [ids[i] for i in node.needs if ids[i].layer == "datastore-image"]
        assert image.targets == node.targets and image.needs == []
