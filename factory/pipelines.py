"""The build graph as complete pipeline files: GitLab CI and GitHub Actions.

Every job runs one command of the graph. How `factory` runs on the runner
is the only choice (`--runner`): `shell`, the factory installed on the
runner's host; `image`, the factory image (Containerfile) started with the
host's engine socket, state folder and mirrors, as the Containerfile's
header says. Credentials reach jobs as each system passes secrets (GitLab:
CI/CD variables, in every job's environment; GitHub: `secrets.*` mapped per
job), and never appear in the file.
"""

from __future__ import annotations

import json
import shlex

import yaml

from factory import graph as graphs
from factory.errors import UsageError
from factory.graph import Graph, Jobs

FORMS = ("json", "gitlab", "github")
RUNNERS = ("image", "shell")
IMAGE_VARIABLE = "FACTORY_IMAGE"
DEFAULT_IMAGE = "factory"
# Variables the clients read their credentials from, by what the graph talks to.
_AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_OPENSTACK = ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME",
              "OS_PROJECT_DOMAIN_NAME", "OS_REGION_NAME")


def credentials(graph: Graph) -> list[str]:
    """The variables holding the credentials this graph's jobs need."""
    jobs = graph.jobs
    urls = [*jobs.cache_from, *([jobs.cache_to] if jobs.cache_to else []), *jobs.publish]
    names: list[str] = []
    if any(u.startswith("s3://") for u in urls):
        names += _AWS
    if any(u == "glance" or u.startswith("swift://") for u in jobs.publish):
        names += _OPENSTACK
    return names


def image_function(graph: Graph) -> str:
    """A shell function `factory` that runs the factory image, so a job's
    command reads the same on either runner. The state folder and the job's
    folder are mounted at their host paths: build containers are the host
    engine's, and mount what the factory stages there. The host's network,
    as a shell runner would have it, reaches the cache and the cloud.
    ELEMENTS_PATH passes through: its folders must be in the job's folder."""
    passed = " ".join(f"-e {n}" for n in ("CI", "FACTORY_PROGRESS", "ELEMENTS_PATH", *credentials(graph)))
    return ("factory() { docker run --rm --network host -v /var/run/docker.sock:/var/run/docker.sock "
            "-v /var/lib/factory:/var/lib/factory -v /etc/apt:/etc/apt:ro "
            f'-v "$PWD:$PWD" -w "$PWD" {passed} "${IMAGE_VARIABLE}" "$@"; }}')


def _header(tool: str, argv: list[str]) -> str:
    return (f"# {tool} made by: {shlex.join(argv)}\n"
            "# Layer keys are in the job commands: make this file again when the matrix, the\n"
            "# elements or the factory change (a job whose key is gone stops at once, exit 2).\n")


def _artifact_paths(output: str) -> list[str]:
    """What a target's job keeps: the manifest and checksums (the image leaves
    through --publish). CI systems keep files of the job's folder only."""
    if output.startswith("/"):
        return []
    return [f"{output.rstrip('/')}/*.manifest.json", f"{output.rstrip('/')}/*.sha256"]


def gitlab(graph: Graph, runner: str, argv: list[str]) -> str:
    doc: dict = {"stages": ["layers", "images"]}
    if runner == "image":
        doc["variables"] = {IMAGE_VARIABLE: DEFAULT_IMAGE}
        doc["default"] = {"before_script": [image_function(graph)]}
    for node in graph.layers:
        doc[node.id] = {"stage": "layers", "needs": node.needs, "script": [shlex.join(node.command)]}
    for node in graph.targets:
        doc[node.id] = {"stage": "images", "needs": node.needs, "script": [shlex.join(node.command)]}
        if _artifact_paths(node.output):
            doc[node.id]["artifacts"] = {"paths": _artifact_paths(node.output)}
    return _header("GitLab CI pipeline", argv) + _dump(doc)


def github(graph: Graph, runner: str, argv: list[str]) -> str:
    env = {n: "${{ secrets.%s }}" % n for n in credentials(graph)}
    prelude = image_function(graph) + "\n" if runner == "image" else ""

    def job(name: str, needs: list[str], command: list[str], extra: list[dict]) -> dict:
        out: dict = {"name": name, "runs-on": "self-hosted"}
        if needs:
            out["needs"] = needs
        if env:
            out["env"] = dict(env)  # its own copy: no YAML anchors, which not every reader takes
        out["steps"] = [{"uses": "actions/checkout@v4"}, {"run": prelude + shlex.join(command)}, *extra]
        return out

    jobs = {n.id: job(f"{n.layer} {n.key[:12]}", n.needs, n.command, []) for n in graph.layers}
    for n in graph.targets:
        paths = _artifact_paths(n.output)
        upload = [{"uses": "actions/upload-artifact@v4", "with": {"name": n.target, "path": "\n".join(paths)}}] if paths else []
        jobs[n.id] = job(f"image {n.target}", n.needs, n.command, upload)
    doc: dict = {"name": "factory images", "on": {"workflow_dispatch": {}}, "permissions": {"contents": "read"}}
    if runner == "image":
        doc["env"] = {IMAGE_VARIABLE: DEFAULT_IMAGE}
    doc["jobs"] = jobs
    return _header("GitHub Actions workflow", argv) + _dump(doc)


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str):
    # Scripts of several lines read as they run: a literal block.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=10_000, default_flow_style=False)


def check(form: str, runner: str, cache_to: str | None, config) -> None:
    """--emit and --runner, before anything is planned."""
    problems = [] if config else ["--emit makes the jobs of a matrix file, and each job reads it: give --config factory.yaml"]
    if form not in FORMS:
        problems.append(f"--emit '{form}' is not known; use {', '.join(FORMS)}")
    if runner not in RUNNERS:
        problems.append(f"--runner '{runner}' is not known; use {', '.join(RUNNERS)}")
    if form in ("gitlab", "github") and not cache_to:
        problems.append(f"--emit {form}: jobs share layers only through a cache; give --cache-to URL "
                        "(or FACTORY_CACHE_TO, or cache: in factory.yaml)")
    if problems:
        raise UsageError("\n".join(problems))


def check_sources(targets: list) -> None:
    """Every setting of the graph's targets comes from factory.yaml: a job
    reads only the file, so a value given to `plan` by a flag or the
    environment would make keys no job finds."""
    from factory.environment import FILE

    outside = sorted({f"{name.removeprefix('env:')} ({source})" for t in targets for name, source in t.origins
                      if source != FILE})
    if outside:
        raise UsageError(f"--emit: {', '.join(outside)} would not reach the jobs, which read only the config file; "
                         "set them in factory.yaml (defaults: or the matrix)")


def emit(form: str, targets: list, jobs: Jobs, cache, runner: str, argv: list[str], builder_base: str | None = None) -> str:
    """The build graph of these targets as `form`; `cache` (store.cache.
    CacheSettings) says which caches to ask for layers already made."""
    from factory import build
    from factory.store.cache import RemoteCache

    stacks = [graphs.stack_of(*build.planned(t, builder_base)) for t in targets]
    held = RemoteCache(cache).held({ref.key for stack in stacks for ref in stack.layers})
    graph = graphs.build_graph(stacks, held, jobs)
    if form == "json":
        return json.dumps(graph.to_json(), indent=2)
    return (gitlab if form == "gitlab" else github)(graph, runner, argv)
