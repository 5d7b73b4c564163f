"""The build graph as pipeline files: every node a job with the graph's
needs and command; credentials only as the CI system passes them."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from factory.errors import UsageError
from factory.graph import Jobs, LayerRef, Stack, build_graph
from factory.pipelines import check, check_sources, credentials, github, gitlab

CACHE = "oci://127.0.0.1:5000/factory/layers"
ARGV = ["factory", "plan", "--config", "factory.yaml", "--emit", "gitlab"]


def _key(c: str) -> str:
    return c * 64


def graph(**kw):
    """Two datastores on one base and guest, one datastore image each."""
    base, guest = LayerRef("base", _key("a")), LayerRef("guest", _key("b"), (_key("a"),))
    stacks = []
    for name, image, top in (("pg", "c", "d"), ("maria", "e", "f")):
        stacks.append(Stack(f"debian-bookworm-{name}", (LayerRef("datastore-image", _key(image)), base, guest,
                                                        LayerRef("datastore", _key(top), (_key("b"), _key(image))))))
    jobs = Jobs(config="factory.yaml", cache_from=(kw.pop("cache_from", CACHE),), cache_to=kw.pop("cache_to", CACHE), **kw)
    return build_graph(stacks, set(), jobs)


def needs_and_commands(g) -> dict[str, tuple[list[str], str]]:
    return {n.id: (n.needs, shlex.join(n.command)) for n in [*g.layers, *g.targets]}


def test_gitlab_jobs_are_the_graph():
    g = graph()
    doc = yaml.safe_load(gitlab(g, "shell", ARGV))
    assert doc["stages"] == ["layers", "images"]
    jobs = {k: v for k, v in doc.items() if k not in ("stages", "variables", "default")}
    assert {k: (v["needs"], v["script"][-1]) for k, v in jobs.items()} == needs_and_commands(g)
    assert all(jobs[n.id]["stage"] == "layers" for n in g.layers)
    assert jobs["image-debian-bookworm-pg"]["artifacts"]["paths"] == ["out/*.manifest.json", "out/*.sha256"]
    assert "default" not in doc  # the shell runner's own factory


def test_an_output_outside_the_project_is_no_artifact():
    base = LayerRef("base", _key("a"))
    g = build_graph([Stack("t", (base,), "/srv/images")], set(), Jobs(config="f.yaml", cache_to=CACHE))
    assert "artifacts" not in yaml.safe_load(gitlab(g, "shell", ARGV))["image-t"]
    assert len(yaml.safe_load(github(g, "shell", ARGV))["jobs"]["image-t"]["steps"]) == 2


def test_gitlab_image_runner_defines_factory_as_the_image():
    doc = yaml.safe_load(gitlab(graph(), "image", ARGV))
    assert doc["variables"] == {"FACTORY_IMAGE": "factory"}
    (function,) = doc["default"]["before_script"]
    assert function.startswith("factory() { docker run --rm --network host -v /var/run/docker.sock:/var/run/docker.sock")
    assert '"$FACTORY_IMAGE" "$@"; }' in function and "-v /var/lib/factory:/var/lib/factory" in function


GITHUB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def test_github_workflow_is_the_graph_and_well_formed():
    g = graph()
    doc = yaml.safe_load(github(g, "shell", ARGV))
    assert doc["on"] == {"workflow_dispatch": {}} and doc["permissions"] == {"contents": "read"}
    jobs = doc["jobs"]
    assert all(GITHUB_ID.match(j) for j in jobs)
    for job_id, (needs, command) in needs_and_commands(g).items():
        job = jobs[job_id]
        assert job.get("needs", []) == needs and all(n in jobs for n in needs)
        assert job["runs-on"] == "self-hosted"
        assert job["steps"][0] == {"uses": "actions/checkout@v4"}
        assert job["steps"][1]["run"] == command
    upload = jobs["image-debian-bookworm-maria"]["steps"][2]
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["with"]["path"] == "out/*.manifest.json\nout/*.sha256"
    # needs form a DAG: every job's needs are earlier jobs
    order = list(jobs)
    assert all(order.index(n) < order.index(j) for j, job in jobs.items() for n in job.get("needs", []))


def test_secrets_are_mapped_not_written():
    g = graph(cache_from="s3://bucket/layers", cache_to="s3://bucket/layers", publish=("glance",))
    assert credentials(g)[:2] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] and "OS_PASSWORD" in credentials(g)
    text = github(g, "image", ARGV)
    assert "&id" not in text  # no YAML anchors
    doc = yaml.safe_load(text)
    for job in doc["jobs"].values():
        assert job["env"]["AWS_SECRET_ACCESS_KEY"] == "${{ secrets.AWS_SECRET_ACCESS_KEY }}"
        assert job["env"]["OS_PASSWORD"] == "${{ secrets.OS_PASSWORD }}"
        run = job["steps"][1]["run"]
        # the image gets the variables by name only: no value on a command line
        assert run.startswith("factory() { docker run") and "-e AWS_SECRET_ACCESS_KEY -e" in run
    assert credentials(graph()) == []  # an anonymous registry needs none


@pytest.mark.parametrize("form, runner, cache_to, config, says", [
    ("yaml", "shell", CACHE, "f.yaml", "--emit 'yaml' is not known"),
    ("gitlab", "vm", CACHE, "f.yaml", "--runner 'vm' is not known"),
    ("github", "image", None, "f.yaml", "give --cache-to URL"),
    ("gitlab", "image", CACHE, None, "give --config"),
])
def test_bad_emit_options(form, runner, cache_to, config, says):
    with pytest.raises(UsageError, match=re.escape(says)):
        check(form, runner, cache_to, config)


def test_json_needs_no_cache():
    check("json", "image", None, "f.yaml")


def test_settings_must_come_from_the_file_every_job_reads(target):
    from_file = target("debian", "postgresql", origins=(("distro", "file"), ("datastore", "file")))
    check_sources([from_file])
    given = target("debian", "mariadb", origins=(("distro", "file"), ("env:GUEST_USERNAME", "--env"), ("release", "env")))
    with pytest.raises(UsageError, match=re.escape("--emit: GUEST_USERNAME (--env), release (env) would not reach the jobs")):
        check_sources([from_file, given])
