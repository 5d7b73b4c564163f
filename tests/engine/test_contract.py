"""DIB's element contract, proven by an element with a hook in every phase.

The contract element sits in a layer of its own (a user layer file, as a site
would add one) between the guest and datastore layers."""

from __future__ import annotations

import json

import pytest

from factory.engine.docker import run_output

from tests.conftest import NATIVE_AGENT, REPO, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]

LAYER = """\
name: contract
phases: [extra-data, pre-install, install, post-install, post-root]
elements: [contract-test]
env: [DIB_RELEASE, GUEST_USERNAME]
rerun: [package-installs, pkg-map, install-bin, install-static]
"""


@pytest.fixture(scope="module")
def contract_layer(tmp_path_factory):
    layers = tmp_path_factory.mktemp("layers")
    (layers / "25-contract.yaml").write_text(LAYER)
    env = {"FACTORY_LAYERS_PATH": str(layers), "ELEMENTS_PATH": str(REPO / "tests" / "elements")}
    out = tmp_path_factory.mktemp("out")
    run = factory("build", "--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT,
                  "--format", "tar", "--output", str(out), env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.layer_states()["contract"] == "built" or run.layer_states()["contract"] == "cached"
    p = factory("plan", "--as", "json", "--distro", "debian", "--release", "bookworm", "--datastore", "postgresql",
                *NATIVE_AGENT, env=env)
    layers_json = {l["layer"]: l for l in json.loads(p.stdout)[0]["layers"]}
    assert list(layers_json) == ["base", "guest", "contract", "datastore"]
    return layers_json["contract"]["image"], out


def read(engine, layer, path: str) -> str:
    image, _ = layer
    return run_output(image, ["cat", path]).decode()


def test_phases_run_in_dib_order(engine, contract_layer):
    phases = read(engine, contract_layer, "/var/lib/contract-test/phases").split()
    assert phases == ["extra-data.d", "pre-install.d", "install.d", "post-install.d", "post-root.d"]


def test_outside_phase_writes_reach_the_layer_through_hooks_path(engine, contract_layer):
    assert read(engine, contract_layer, "/var/lib/contract-test/staged").strip() == "staged-by-extra-data"
    outside = read(engine, contract_layer, "/var/lib/contract-test/env.extra-data.d")
    assert "TMP_HOOKS_PATH=/" in outside and "TARGET_ROOT=/" in outside


def test_inside_phases_see_environment_d_bin_and_dib_variables(engine, contract_layer):
    assert read(engine, contract_layer, "/var/lib/contract-test/envd").strip() == "from-environment-d"
    assert read(engine, contract_layer, "/var/lib/contract-test/tool").strip() == "contract-test-tool-ran"
    env = dict(
        line.split("=", 1) for line in read(engine, contract_layer, "/var/lib/contract-test/env.install.d").splitlines() if "=" in line
    )
    assert env["DISTRO_NAME"] == "debian"
    assert env["DIB_RELEASE"] == "bookworm"
    assert env["ARCH"] == "amd64"
    assert "contract-test" in env["IMAGE_ELEMENT"].split()
    assert "contract-test" in env["IMAGE_ELEMENT_YAML"]
    assert env["DIB_INIT_SYSTEM"] == "systemd"


def test_package_installs_and_pkg_map_work_unmodified(engine, contract_layer):
    # contract-test-pkg is mapped to `tree` by the element's pkg-map
    assert read(engine, contract_layer, "/var/lib/contract-test/package").strip().endswith("/tree")


def test_assembly_runs_the_finalise_phases_in_dib_order(contract_layer):
    import tarfile

    _, out = contract_layer
    tar = tarfile.open(next(out.glob("debian-bookworm-postgresql-*.tar")))
    phases = tar.extractfile("./var/lib/contract-test/phases").read().decode().split()
    assert phases == [
        "extra-data.d", "pre-install.d", "install.d", "post-install.d", "post-root.d",
        "block-device.d", "pre-finalise.d", "finalise.d", "cleanup.d",
    ]
