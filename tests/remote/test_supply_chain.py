"""SBOMs and signed provenance end to end, against the real registry and S3
on 127.0.0.1: a built stack's SBOMs validate and count what dpkg counts; a
layer pushed unsigned or signed by a key nobody allowed is refused under
--require-signed; one signed by an allowed key is pulled and used."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from factory import attest, sbom
from tests.conftest import factory
from tests.remote.conftest import events, forget, keys

pytestmark = [pytest.mark.engine, pytest.mark.slow]
DPKG = r"dpkg-query -W -f '${db:Status-Status} ${Package}:${Architecture} ${Version}\n' | sed -n 's/^installed //p'"


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("ours", "theirs"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True)
        made[name] = folder / name
    allowed = folder / "allowed_signers"
    allowed.write_text(f"builders@example.org {(folder / 'ours.pub').read_text()}")
    return SimpleNamespace(allowed=allowed, **made)


@pytest.fixture(scope="module")
def built(stack, builder, signers, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed")
    run = factory("build", *stack, "--datastore", "postgresql", "--output", str(out))  # unsigned: signed at push
    assert run.returncode == 0, run.stderr[-3000:]
    return SimpleNamespace(out=out, keys=keys(*stack, "--datastore", "postgresql"))


def _dpkg(image: str) -> set[str]:
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", image, "-c", DPKG], capture_output=True, text=True, check=True)
    return set(out.stdout.split("\n")) - {""}


def test_each_layers_sbom_validates_and_counts_what_dpkg_counts(built):
    below: set[str] = set()
    for layer in ("base", "guest", "datastore"):
        text = attest.stored(built.keys[layer])[attest.SBOM].decode()
        assert sbom.problems(text) is None
        components = json.loads(text)["components"]
        debs = [c for c in components if c["purl"].startswith("pkg:deb/")]
        installed = _dpkg(f"factory-layer:{built.keys[layer]}")
        added = installed - below
        print(f"\n{layer}: {len(debs)} deb packages in its SBOM, dpkg counts {len(added)} added or changed; "
              f"{len(components) - len(debs)} pip distributions")
        assert len(debs) == len(added)
        below = installed
        if layer == "guest":
            assert any(c["purl"].startswith("pkg:pypi/trove@") for c in components)
    image_sbom = next(built.out.glob("*.sbom.cdx.json")).read_text()
    assert sbom.problems(image_sbom) is None
    assert sum(c["purl"].startswith("pkg:deb/") for c in json.loads(image_sbom)["components"]) == len(below)
    manifest = json.loads(next(built.out.glob("*.manifest.json")).read_text())
    assert set(manifest["supply_chain"]) == {"sbom", "provenance"}  # a signature only with --signing-key


def test_unsigned_and_unknown_signers_are_refused_and_an_allowed_signer_is_used(server, built, signers, stack, tmp_path):
    top = built.keys["datastore"]
    urls = {case: f"{server.url}-{case}" for case in ("unsigned", "theirs", "ours")}
    for key in built.keys.values():  # as on a machine that never held a key (a push sends a signature made before)
        (attest.folder(key) / attest.SIGNATURE).unlink(missing_ok=True)
    for case, url in urls.items():
        key_args = [] if case == "unsigned" else ["--signing-key", str(getattr(signers, case))]
        # The refused pulls ask for the base layer only; the whole stack goes where a build will pull it.
        pushed = top if case == "ours" else built.keys["base"]
        run = factory("layers", "push", pushed, "--to", url, *server.args, *key_args, env=server.env)
        assert run.returncode == 0, run.stderr[-2000:]
    forget(built.keys["base"])
    for case, reason in (("unsigned", "no signature"), ("theirs", "not in allowed_signers")):
        run = factory("layers", "pull", built.keys["base"], "--from", urls[case], "--require-signed", str(signers.allowed),
                      *server.args, env=server.env)
        errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
        print(f"\n[{server.kind}] {case}: exit {run.returncode}: {errors}")
        assert run.returncode == 4 and len(errors) == 1 and "refused" in errors[0] and reason in errors[0]
        assert built.keys["base"] not in factory("layers", "ls", "--as", "json").stdout
    run = factory("build", *stack, "--datastore", "postgresql", "--output", str(tmp_path), "--cache-from", urls["ours"],
                  "--require-signed", str(signers.allowed), *server.args, env=server.env)
    assert run.returncode == 0, run.stderr[-3000:]
    verified = events(run, "layer signature verified")
    print(f"\n[{server.kind}] ours: verified {({k: v['signer'] for k, v in verified.items()})}, "
          f"pulled {sorted(events(run, 'layer pulled'))}, built {sorted(events(run, 'layer built'))}")
    assert set(verified) == set(events(run, "layer pulled")) == {"base", "guest", "datastore"}
    assert events(run, "layer built") == {}
