"""The build graph run by CI systems, for real, on this machine.

gitlab-ci-local runs the .gitlab-ci.yml that `factory plan --emit gitlab`
makes, with its shell executor, two jobs at a time, against a registry on
127.0.0.1 (the only state the jobs share, as on many machines); act runs
the GitHub workflow on its self-hosted (host) platform. The matrix: debian
bookworm x postgresql, mariadb, container mode, tar output (no verify: this
is about the graph). The datastore layers are this test's own (an edited
element), so that their jobs build them; base, guest and the datastore
images are the suite's usual ones, built by their jobs only if the local
store lacks them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, edited_element
from tests.servers.registry import Registry

pytestmark = [pytest.mark.engine, pytest.mark.slow]
VENV_BIN = Path(sys.executable).parent
GITLAB_CI_LOCAL = REPO / ".tools" / "node_modules" / ".bin" / "gitlab-ci-local"
ACT = VENV_BIN / "act"
MATRIX = """\
defaults:
  format: tar
  output: out
matrix:
  distro: [debian]
  release: [bookworm]
  datastore: [postgresql, mariadb]
"""
# A finished step on --progress plain: "<layer> <key, 12 digits> <how> ...".
STEP = re.compile(r"^(?P<layer>\S+) (?P<key>[0-9a-f]{12}) (?P<state>cached|pulled|built|pushed)\b(?P<rest>.*)$")
# Where act's upload-artifact would be fetched from is not reachable here:
# this stand-in checks the files the step names are there, and uploads nothing.
UPLOAD_STAND_IN = """\
name: upload-artifact stand-in (offline)
inputs:
  name: {required: true}
  path: {required: true}
runs:
  using: composite
  steps:
    - shell: bash
      run: printf '%s\\n' "${{ inputs.path }}" | while read -r files; do if [ -n "$files" ]; then ls -l $files; fi; done
"""


@dataclass
class Project:
    root: Path
    out: Path
    env: dict[str, str]
    registry: Registry

    def factory(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "factory"), *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=3600)

    def emit(self, form: str, cache: str | None = None, runner: str = "shell") -> str:
        run = self.factory("plan", "--config", "factory.yaml", "--emit", form, "--runner", runner,
                           "--cache-to", cache or self.registry.url)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout


def make_project(root: Path, registry: Registry, scratch: Path) -> Project:
    root.mkdir(parents=True)
    out = root / "out"
    (root / "factory.yaml").write_text(MATRIX)
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "ELEMENTS_PATH": str(edited_element(scratch, "container-datastore"))}
    env.pop("FACTORY_PROGRESS", None)
    git = ["git", "-c", "user.email=ci@factory.invalid", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "the matrix"], check=True)
    return Project(root, out, env, registry)


def steps(log: str) -> list[tuple[str, str, str]]:
    """(layer, key prefix, how) of each finished step a job's log shows."""
    return [(m["layer"], m["key"], m["state"]) for m in map(STEP.match, log.splitlines()) if m]


def forget(project: Project, keys: list[str]) -> None:
    """This test's own layers leave the local store (never the suite's)."""
    for key in keys:
        project.factory("layers", "rm", key)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    server = Registry(tmp_path_factory.mktemp("ci-registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, registry, builder):
    """The emitted .gitlab-ci.yml, run by gitlab-ci-local: the project, the
    graph (JSON), each job's log, the wall time."""
    if not GITLAB_CI_LOCAL.exists():
        pytest.fail(f"{GITLAB_CI_LOCAL} is missing; run scripts/setup-host.sh --test")
    scratch = tmp_path_factory.mktemp("ci")
    project = make_project(scratch / "project", registry, scratch)
    graph = json.loads(project.emit("json"))
    (project.root / ".gitlab-ci.yml").write_text(project.emit("gitlab"))
    started = time.monotonic()
    run = subprocess.run([str(GITLAB_CI_LOCAL), "--concurrency", "2", "--timestamps", "--no-color"], cwd=project.root,
                         env=project.env, capture_output=True, text=True, timeout=7200)
    seconds = time.monotonic() - started
    output = project.root / ".gitlab-ci-local" / "output"
    logs = {p.stem: p.read_text() for p in output.glob("*.log")}
    yield project, graph, logs, run, seconds
    forget(project, [n["key"] for n in graph["layers"] if n["layer"] == "datastore"])


def test_gitlab_ci_local_runs_the_graph_each_layer_made_by_one_job(pipeline):
    project, graph, logs, run, seconds = pipeline
    assert run.returncode == 0 and "FAIL" not in run.stdout, run.stdout[-6000:]
    jobs = [n["id"] for n in graph["layers"]] + [n["id"] for n in graph["targets"]]
    assert sorted(logs) == sorted(jobs)
    assert [n["layer"] for n in graph["layers"]].count("datastore") == 2
    # who did what to each layer
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for job, log in logs.items():
        for layer, key, state in steps(log):
            seen[key].append((job, state))
    table = []
    for node in graph["layers"]:
        done = seen[node["key"][:12]]
        own = [state for job, state in done if job == node["id"] and state != "pushed"]
        # The node's own job made it (built, or found it built), no other job built it.
        assert own in (["built"], ["cached"]), (node["id"], done)
        assert [j for j, s in done if s == "built"] in ([], [node["id"]]), (node["id"], done)
        # Pushed once, by its own job, unless the registry had it.
        assert [j for j, s in done if s == "pushed"] in ([], [node["id"]]), (node["id"], done)
        assert project.registry.manifest(node["key"])["layers"], f"{node['id']} is not in the registry"
        table.append((node["id"], ", ".join(f"{j}: {s}" for j, s in done)))
    datastore_jobs = [n["id"] for n in graph["layers"] if n["layer"] == "datastore"]
    for job in datastore_jobs:  # this test's own layers: built by their job, used by a target's job
        assert ("built" in [s for layer, k, s in steps(logs[job])]), logs[job][-3000:]
    for target in graph["targets"]:
        manifests = list(project.out.glob(f"{target['target']}-*.manifest.json"))
        assert len(manifests) == 1, target["target"]
        manifest = json.loads(manifests[0].read_text())
        assert manifest["layers"][-1]["key"] == target["top"]
        assert (project.out / manifest["images"]["tar"]["file"]).stat().st_size > 0
    print(f"\ngitlab-ci-local: {len(jobs)} jobs, 2 at a time, {seconds:.0f}s wall")
    for job, done in table:
        print(f"  {job:32} {done}")
    for target in graph["targets"]:
        print(f"  {target['id']:32} " + ", ".join(f"{layer} {s}" for layer, k, s in steps(logs[target["id"]])))


def test_a_job_on_a_machine_without_the_layer_pulls_it(pipeline):
    project, graph, logs, run, _ = pipeline
    target = graph["targets"][0]
    forget(project, [target["top"]])  # this test's own datastore layer: as on another machine
    again = project.factory(*target["command"][1:])
    assert again.returncode == 0, again.stderr[-3000:]
    assert (("datastore", target["top"][:12], "pulled") in steps(again.stderr)), again.stderr[-3000:]
    print("\n" + next(l for l in again.stderr.splitlines() if l.startswith(f"datastore {target['top'][:12]} pulled")))


@pytest.fixture(scope="module")
def factory_image(builder):
    """The factory image from the Containerfile, on the base the builder
    uses (bootstrapped from the archive here: no registry answers)."""
    from factory.engine.builder import resolve_base
    from factory.engine.docker import buildkit_cli
    from factory.trust import host_trust

    tag = f"factory-ci-test:{os.getpid()}"
    cmd = [buildkit_cli(), "build", "-q", "-t", tag, "--build-arg", f"BASE={resolve_base(None)}",
           "-f", str(REPO / "Containerfile")]
    if host_trust().ca_bundle:
        cmd += ["--secret", f"id=ca,src={host_trust().ca_bundle}"]
    run = subprocess.run([*cmd, str(REPO)], env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True,
                         text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    yield tag
    subprocess.run(["docker", "rmi", tag], capture_output=True)


def test_the_factory_image_runs_the_jobs_and_finds_the_layers_by_the_same_keys(pipeline, factory_image, tmp_path):
    """The pipeline again, every job in the factory image (`--runner image`),
    in a copy of the project with its element folder inside (the container
    sees only the job's folder). The registry holds every layer now, so the
    graph is the targets' jobs alone; each finds its layers, which the shell
    runner's jobs built, under the same keys, and its image comes out."""
    project, graph, _, _, _ = pipeline
    root = tmp_path / "project"
    shutil.copytree(project.root, root, ignore=shutil.ignore_patterns("out", ".gitlab-ci*"))
    shutil.copytree(project.env["ELEMENTS_PATH"], root / "elements")
    copy = Project(root, root / "out", {**project.env, "ELEMENTS_PATH": str(root / "elements")}, project.registry)
    again = json.loads(copy.emit("json"))
    assert again["layers"] == [] and [t["top"] for t in again["targets"]] == [t["top"] for t in graph["targets"]]
    (root / ".gitlab-ci.yml").write_text(copy.emit("gitlab", runner="image"))
    started = time.monotonic()
    run = subprocess.run([str(GITLAB_CI_LOCAL), "--concurrency", "2", "--no-color", "--variable",
                          f"FACTORY_IMAGE={factory_image}"], cwd=root, env=copy.env, capture_output=True, text=True,
                         timeout=3600)
    seconds = time.monotonic() - started
    assert run.returncode == 0 and "FAIL" not in run.stdout, run.stdout[-6000:]
    logs = {p.stem: p.read_text() for p in (root / ".gitlab-ci-local" / "output").glob("*.log")}
    assert sorted(logs) == sorted(t["id"] for t in graph["targets"])
    for target in graph["targets"]:
        done = steps(logs[target["id"]])
        assert ("datastore", target["top"][:12], "cached") in done, logs[target["id"]][-3000:]
        assert not [s for _, _, s in done if s == "built"], done
        manifests = list(copy.out.glob(f"{target['target']}-*.manifest.json"))
        assert len(manifests) == 1, (target["target"], logs[target["id"]][-3000:])
        assert json.loads(manifests[0].read_text())["layers"][-1]["key"] == target["top"]
    print(f"\nfactory image: {len(logs)} jobs in {seconds:.0f}s, each layer cached under the host's key")


def test_act_runs_the_github_workflow(tmp_path, builder):
    """act on its self-hosted platform: the jobs and their needs as GitHub
    runs them, offline; actions/checkout is act's own copy of the project,
    actions/upload-artifact a stand-in (GitHub is not reachable from here).
    A project, datastore layers and an empty registry of its own."""
    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry").start()
    project = make_project(tmp_path / "project", registry, tmp_path)
    graph = json.loads(project.emit("json"))
    try:
        _run_act(project, graph, tmp_path)
    finally:
        registry.stop()
        forget(project, [n["key"] for n in graph["layers"] if n["layer"] == "datastore"])


def _run_act(project: Project, graph: dict, tmp_path: Path) -> None:
    workflow = project.root / ".github" / "workflows" / "factory.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(project.emit("github"))
    stand_in = tmp_path / "upload-artifact"
    stand_in.mkdir()
    (stand_in / "action.yml").write_text(UPLOAD_STAND_IN)
    started = time.monotonic()
    run = subprocess.run([str(ACT), "workflow_dispatch", "-P", "self-hosted=-self-hosted",
                          "--local-repository", f"actions/upload-artifact@v4={stand_in}"],
                         cwd=project.root, env=project.env, capture_output=True, text=True, timeout=7200)
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    jobs = [*graph["layers"], *graph["targets"]]
    for node in jobs:
        name = f"{node['layer']} {node['key'][:12]}" if "layer" in node else f"image {node['target']}"
        # act pads a job's name to the longest one's width
        assert re.search(rf"\[factory images/{re.escape(name)} *\] 🏁  Job succeeded", output), output[-6000:]
    assert run.returncode == 0, output[-6000:]
    for target in graph["targets"]:  # the upload stand-in listed the target's manifest
        assert re.search(rf"out/{target['target']}-[0-9a-f]{{12}}\.manifest\.json", output), output[-6000:]
    for node in graph["layers"]:
        assert project.registry.manifest(node["key"])["layers"], f"{node['id']} is not in the registry"
    built = re.findall(r"\[factory images/(datastore [0-9a-f]{12}) *\]\s+\|\s+datastore [0-9a-f]{12} built", output)
    assert len(built) == 2, output[-6000:]  # this test's own layers, each by its job
    print(f"\nact: {len(jobs)} jobs succeeded in {seconds:.0f}s; built by their jobs: {built}")
