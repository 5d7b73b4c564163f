"""The build graph of a matrix, for CI systems to fan out: every distinct
layer key once (a job that builds and pushes that one layer, after the jobs
of the layers it builds on), then one job per target (assemble, and verify or
publish when asked). Layers a `--cache-from` cache already holds are left
out: their jobs would only pull them.

Pure: plans and the keys a cache holds in, nodes and their commands out
(`factory plan --emit`; the schema is in docs/ci.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from factory.errors import UsageError
from factory.recipes import IMAGE_LAYER

SCHEMA = 1
KEY_ARG = 16  # hex digits of a key in a job's command: unique, and readable in a log


@dataclass(frozen=True)
class LayerRef:
    """One layer of a target's stack (or a datastore image built here)."""

    layer: str
    key: str
    needs: tuple[str, ...] = ()  # keys of what it is built on: its parent, the images it preloads


@dataclass(frozen=True)
class Stack:
    target: str
    layers: tuple[LayerRef, ...]  # bottom first; the last one is what the target assembles
    output: str = "out"  # the folder its artifact is written to


@dataclass(frozen=True)
class Jobs:
    """What every job's command carries besides its node."""

    config: str
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    s3_endpoint_url: str | None = None
    verify: bool = False
    publish: tuple[str, ...] = ()
    base: str | None = None  # the builder's base image (--base), when not the default

    def cache_args(self) -> list[str]:
        args = [a for url in self.cache_from for a in ("--cache-from", url)]
        if self.cache_to:
            args += ["--cache-to", self.cache_to]
        if self.s3_endpoint_url:
            args += ["--s3-endpoint-url", self.s3_endpoint_url]
        # The cache is the only state jobs share: one that cannot be used
        # fails the job (exit 6, worth a retry) instead of leaving the next
        # jobs nothing to pull.
        return args + (["--cache-required"] if args else [])

    def common(self) -> list[str]:
        return ["build", "--config", self.config, *(["--base", self.base] if self.base else [])]


@dataclass
class LayerNode:
    id: str
    layer: str
    key: str
    needs: list[str]  # node ids
    targets: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"id": self.id, "layer": self.layer, "key": self.key, "needs": self.needs, "targets": self.targets,
                "command": self.command}


@dataclass
class TargetNode:
    id: str
    target: str
    top: str  # the key of the layer it assembles
    needs: list[str]
    output: str
    verify: bool
    publish: list[str]
    command: list[str]

    def to_json(self) -> dict:
        return {"id": self.id, "target": self.target, "top": self.top, "needs": self.needs, "output": self.output,
                "verify": self.verify, "publish": self.publish, "command": self.command}


@dataclass
class Graph:
    jobs: Jobs
    layers: list[LayerNode]
    targets: list[TargetNode]
    reused: list[dict]  # layers a --cache-from cache holds: {layer, key, targets}

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "config": self.jobs.config,
                "cache": {"from": list(self.jobs.cache_from), "to": self.jobs.cache_to},
                "layers": [n.to_json() for n in self.layers], "targets": [n.to_json() for n in self.targets],
                "reused": self.reused}


def job_id(text: str) -> str:
    """A name every CI system takes as a job id (GitHub's are the strictest)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def build_graph(stacks: list[Stack], cached: set[str], jobs: Jobs) -> Graph:
    names = [s.target for s in stacks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"targets named {', '.join(twice)} appear more than once in the matrix; a CI job builds a "
                         "target by its name: make them differ (release, datastore) or split the file")
    nodes: dict[str, LayerNode] = {}
    reused: dict[str, dict] = {}
    for stack in stacks:
        for ref in stack.layers:
            if ref.key in cached:
                reused.setdefault(ref.key, {"layer": ref.layer, "key": ref.key, "targets": []})["targets"].append(stack.target)
                continue
            node = nodes.get(ref.key)
            if node is None:
                node = nodes[ref.key] = LayerNode(
                    id=job_id(f"{ref.layer}-{ref.key[:12]}"), layer=ref.layer, key=ref.key,
                    needs=[nodes[k].id for k in ref.needs if k in nodes],
                    command=["factory", *jobs.common(), "--layer", ref.key[:KEY_ARG], *jobs.cache_args()])
            node.targets.append(stack.target)
    targets = []
    for stack in stacks:
        top = stack.layers[-1].key
        command = ["factory", *jobs.common(), "--target", stack.target, *jobs.cache_args(),
                   *(["--verify"] if jobs.verify else []), *[a for p in jobs.publish for a in ("--publish", p)]]
        targets.append(TargetNode(id=job_id(f"image-{stack.target}"), target=stack.target, top=top,
                                  needs=[nodes[top].id] if top in nodes else [], output=stack.output, verify=jobs.verify,
                                  publish=list(jobs.publish), command=command))
    return Graph(jobs, list(nodes.values()), targets, list(reused.values()))


def stack_of(plan, sources) -> Stack:
    """A planned target (plan.Plan, and its containers.ImageSource list) as a
    Stack: the datastore images built here first, each needed by the layer
    whose key records it (DATASTORE_IMAGE_SOURCE names `distro:KEY`)."""
    images = [LayerRef(IMAGE_LAYER, s.plan.key) for s in sources if s.plan]
    layers = []
    for layer in plan.layers:
        label = layer.env.get("DATASTORE_IMAGE_SOURCE", "")
        preloads = tuple(i.key for i in images if i.key in label)
        layers.append(LayerRef(layer.name, layer.key, tuple(k for k in [layer.inputs.parent] if k) + preloads))
    return Stack(plan.target.name, tuple(images + layers), plan.target.output)
