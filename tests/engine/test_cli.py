"""The command surface a user meets first."""

from tests.conftest import factory


def test_help_lists_the_commands():
    run = factory("--help")
    assert run.returncode == 0
    for command in ("build", "plan", "layers", "builder", "elements", "verify", "publish"):
        assert command in run.stdout


def test_unknown_distro_is_one_line_naming_the_valid_ones():
    run = factory("build", "--distro", "nosuch", "--datastore", "postgresql")
    assert run.returncode != 0
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1
    assert "nosuch" in errors[0] and "debian" in errors[0] and "ubuntu" in errors[0]


def test_unknown_datastore_names_the_valid_ones():
    run = factory("build", "--distro", "debian", "--datastore", "nosuch")
    assert run.returncode != 0
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1
    assert "postgresql" in errors[0] and "mariadb" in errors[0]


def test_elements_shows_the_matrix():
    run = factory("elements", "--as", "json")
    assert run.returncode == 0
    assert "postgresql" in run.stdout and "fedora" in run.stdout


def test_publish_of_a_missing_artifact_is_one_clear_line():
    run = factory("publish", "/nonexistent/x.qcow2", "--to", "glance")
    assert run.returncode == 2
    assert [l for l in run.stderr.splitlines() if l.startswith("error:")] == [
        "error: /nonexistent/x.qcow2 not found; give a built image (.qcow2) or its .manifest.json"
    ]


def test_verify_of_a_missing_image_is_one_clear_line():
    run = factory("verify", "/nonexistent/x.qcow2", "--datastore", "postgresql")
    assert run.returncode == 2
    assert [l for l in run.stderr.splitlines() if l.startswith("error:")] == [
        "error: /nonexistent/x.qcow2: No such file or directory; give the path of a built image (.qcow2) or its .manifest.json"
    ]


def test_fedora_plan_shows_the_fedora_stack():
    import json

    run = factory("plan", "--distro", "fedora", "--datastore", "postgresql", "--as", "json")
    assert run.returncode == 0, run.stderr
    layers = {l["layer"]: l for l in json.loads(run.stdout)[0]["layers"]}
    assert "fedora-minimal" in layers["base"]["elements"]
    assert "fedora-guest" in layers["guest"]["elements"]
    # The default agent runs the datastore in a container; native installs packages.
    assert "container-datastore" in layers["datastore"]["elements"]
    run = factory("plan", "--distro", "fedora", "--datastore", "postgresql", "--datastore-mode", "native", "--as", "json")
    assert "fedora-postgresql" in json.loads(run.stdout)[0]["layers"][-1]["elements"]


def test_fedora_build_without_a_reachable_mirror_stops_at_once(tmp_path):
    import time

    from tests.conftest import closed_mirror_repos

    closed_mirror_repos(tmp_path)
    started = time.monotonic()
    run = factory("build", "--distro", "fedora", "--datastore", "postgresql",
                  "--env", f"DIB_YUM_MINIMAL_BOOTSTRAP_REPOS={tmp_path}", "--output", str(tmp_path))
    assert run.returncode == 6  # infrastructure unavailable (README: exit codes)
    assert time.monotonic() - started < 30
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "DIB_YUM_MINIMAL_BOOTSTRAP_REPOS" in errors[0]
