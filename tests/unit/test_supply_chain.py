"""SBOMs, provenance statements and their signatures, without an engine:
the CycloneDX library's own validator, the real ssh-keygen, and a remote
cache of fake stores that must refuse what no allowed key signed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from factory import attest, provenance, reproducible, sbom, signing
from factory.errors import UsageError
from factory.signing import Untrusted
from factory.store.cache import CacheSettings, RemoteCache
from factory.store.remote import Transfer

PARENT = """os\tdebian\t12
deb\tbash\t5.2.15-2+b2\tamd64\tbash\tMatthias Klose <doko@debian.org>
deb\tlibc6\t2.36-9+deb12u3\tamd64\tglibc\tGNU Libc Maintainers <debian-glibc@lists.debian.org>
"""
LAYER = PARENT.replace("2.36-9+deb12u3", "2.36-9+deb12u4") + """deb\tpython3\t3.11.2-1+b1\tamd64\tpython3-defaults\tMatthias Klose <doko@debian.org>
pip\ttrove\t13.0.1\t/opt/guest-agent-venv/lib/python3.11/site-packages/trove-13.0.1.dist-info
pip\tpip\t23.0.1\t/opt/guest-agent-venv/lib/python3.11/site-packages/pip-23.0.1.dist-info
"""


def test_a_layer_lists_what_it_added_or_changed_and_the_document_validates():
    added = sbom.added(sbom.parse(LAYER), sbom.parse(PARENT))
    assert [(p.kind, p.name, p.version) for p in added.packages] == [
        ("deb", "libc6", "2.36-9+deb12u4"), ("deb", "python3", "3.11.2-1+b1"), ("pip", "pip", "23.0.1"), ("pip", "trove", "13.0.1")]
    text = sbom.document(added, "guest layer", "k" * 64, reproducible.DEFAULT_EPOCH, "0.1.0")
    assert sbom.problems(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.5" and doc["metadata"]["component"]["name"] == "guest layer"
    purls = {c["purl"] for c in doc["components"]}
    assert "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc" in purls
    assert "pkg:pypi/trove@13.0.1" in purls
    assert text == sbom.document(added, "guest layer", "k" * 64, reproducible.DEFAULT_EPOCH, "0.1.0")  # no clock, no random


def test_a_broken_document_fails_the_librarys_validator():
    doc = json.loads(sbom.document(sbom.parse(PARENT), "base layer", "k", 0, "0.1.0"))
    doc["components"][0]["type"] = "not-a-type"
    assert sbom.problems(json.dumps(doc)) is not None


def test_the_layer_statement_names_the_image_and_what_its_key_is_made_of():
    inputs = {"layer": "guest", "parent": "p" * 64, "elements": {"trove-guest": "a" * 64}, "builder_image": "sha256:" + "b" * 64,
              "env": {"GUEST_USERNAME": "ubuntu"}, "phases": ["install"], "schema": 1}
    statement = provenance.layer_statement("k" * 64, "sha256:" + "c" * 64, ["sha256:" + "d" * 64], inputs, "t", b"{}", "0.1.0",
                                           "sha256:" + "e" * 64)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert provenance.subject_digest(statement, "factory-layer:" + "k" * 64) == "sha256:" + "c" * 64
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["element:trove-guest"]["digest"] == {"sha256": "a" * 64}
    assert deps["builder-image"]["digest"] == {"sha256": "b" * 64}
    assert deps["parent-layer"]["annotations"]["key"] == "p" * 64


def test_source_date_epoch_comes_from_the_inputs_never_the_clock():
    assert reproducible.source_date_epoch({}) == reproducible.DEFAULT_EPOCH
    assert reproducible.source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    snapshot = {"DIB_DISTRIBUTION_MIRROR": "http://snapshot.debian.org/archive/debian/20240601T000000Z/"}
    assert reproducible.source_date_epoch(snapshot) == 1717200000


def _key(folder: Path, name: str, kind: str = "ed25519") -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


@pytest.fixture
def keys(tmp_path):
    ours, theirs = _key(tmp_path, "ours"), _key(tmp_path, "theirs")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"builders@example.org {ours.with_suffix('.pub').read_text()}")
    return SimpleNamespace(ours=ours, theirs=theirs, allowed=allowed)


def test_a_signature_verifies_only_by_an_allowed_key_and_only_for_its_bytes(keys):
    data = b'{"statement": 1}\n'
    assert signing.verify(data, signing.sign(data, keys.ours), keys.allowed) == "builders@example.org"
    with pytest.raises(Untrusted, match="not in allowed_signers"):
        signing.verify(data, signing.sign(data, keys.theirs), keys.allowed)
    with pytest.raises(Untrusted, match="does not match"):
        signing.verify(data + b" ", signing.sign(data, keys.ours), keys.allowed)
    with pytest.raises(Untrusted, match="no signature"):
        signing.verify(data, None, keys.allowed)


def test_signing_options_are_checked_before_any_work(tmp_path, keys):
    with pytest.raises(UsageError, match="no such file"):
        signing.check_signing_key(tmp_path / "nothing")
    with pytest.raises(UsageError, match="Ed25519"):
        signing.check_signing_key(_key(tmp_path, "rsa", "rsa"))
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    with pytest.raises(UsageError, match="lists no key"):
        signing.check_allowed_signers(empty)
    assert signing.check_signing_key(keys.ours) == keys.ours.resolve()


class SignedStore:
    """A cache that has the layer, with the documents given."""

    def __init__(self, files):
        self.files, self.pulled = files, []

    def pull_attachments(self, key):
        return dict(self.files)

    def pull(self, key):
        self.pulled.append(key)
        return Transfer(10, 1.0)


def _documents(key: str, image_id: str, signer: Path | None) -> dict[str, bytes]:
    statement = provenance.encode(provenance.layer_statement(key, image_id, [], {}, "t", b"sbom", "0.1.0", None))
    files = {attest.SBOM: b"sbom", attest.PROVENANCE: statement}
    if signer:
        files[attest.SIGNATURE] = signing.sign(statement, signer)
    return files


@pytest.mark.parametrize("signer, pulled", [(None, False), ("theirs", False), ("ours", True)])
def test_require_signed_refuses_unsigned_and_unknown_signers_before_pulling(keys, monkeypatch, tmp_path, signer, pulled):
    monkeypatch.setenv("FACTORY_STATE_DIR", str(tmp_path / "state"))
    key, image_id = "k" * 64, "sha256:" + "c" * 64
    monkeypatch.setattr(attest, "_image", lambda k: SimpleNamespace(id=image_id))
    store = SignedStore(_documents(key, image_id, getattr(keys, signer) if signer else None))
    cache = RemoteCache(CacheSettings(sources=("s3://b/x",), allowed_signers=keys.allowed))
    cache.stores["s3://b/x"] = store
    assert (cache.pull("base", key) is not None) == pulled
    assert store.pulled == ([key] if pulled else [])  # a refused layer's bytes are not even fetched
    assert (attest.stored(key) == store.files) == pulled


def test_a_signed_statement_about_other_bytes_is_refused(keys, monkeypatch):
    key = "k" * 64
    files = _documents(key, "sha256:" + "c" * 64, keys.ours)
    statement, _ = attest.trusted(key, files, keys.allowed)
    removed = []
    monkeypatch.setattr(attest, "_image", lambda k: SimpleNamespace(id="sha256:" + "0" * 64))
    monkeypatch.setattr(attest, "client", lambda: SimpleNamespace(images=SimpleNamespace(remove=removed.append)))
    with pytest.raises(Untrusted, match="names sha256:cccc"):
        attest.check_pulled(key, statement)
    assert removed == ["factory-layer:" + key]  # the wrong image does not stay under the layer's name
    with pytest.raises(Untrusted, match="not about layer"):
        attest.trusted("j" * 64, files, keys.allowed)
    with pytest.raises(Untrusted, match="SBOM"):
        attest.trusted(key, {**files, attest.SBOM: b"another"}, keys.allowed)


def test_the_tidy_up_takes_out_what_differs_and_only_what_this_build_wrote(tmp_path):
    from factory.engine.phases import TIDY_SOURCE

    root, epoch = tmp_path / "root", reproducible.DEFAULT_EPOCH
    files = {"etc/machine-id": "0123\n", "etc/ssh/ssh_host_ed25519_key": "k", "var/log/dpkg.log": "log",
             "var/log/apt/history.log": "log", "var/cache/ldconfig/aux-cache": "c", "var/cache/apt/pkgcache.bin": "c",
             "var/lib/dpkg/status-old": "s", "etc/shadow": "root:*:19999:0:99999:7:::\nnobody:*:20001:0:99999:7:::\n",
             "usr/lib/python3/x/__pycache__/a.cpython-311.pyc": "pyc", "var/lib/systemd/random-seed": "r",
             "usr/share/old-file": "from a layer below", "etc/ssh/ssh_host_rsa_key": "from a layer below",
             "etc/hostname": "0456f8423c93\n", "etc/iscsi/initiatorname.iscsi": "InitiatorName=iqn.1993-08.org.debian:01:e56f\n",
             "var/lib/dbus/machine-id": "c2cbd21c\n", "etc/ssl/private/ssl-cert-snakeoil.key": "private",
             "etc/ssl/certs/ssl-cert-snakeoil.pem": "cert", "etc/ssl/certs/ca-from-below.pem": "a CA"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "etc/ssl/certs/9e0a1b2c.0").symlink_to("ssl-cert-snakeoil.pem")
    (root / "etc/ssl/certs/5ad8a5d6.0").symlink_to("ca-from-below.pem")
    for below in ("usr/share/old-file", "etc/ssh/ssh_host_rsa_key", "etc/ssl/certs/ca-from-below.pem"):
        os.utime(root / below, (epoch - 10, epoch - 10))
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    subprocess.run(["bash", str(TIDY_SOURCE), str(root)], env=env, check=True)
    subprocess.run(["bash", str(TIDY_SOURCE), "--clamp", str(root)], env=env, check=True)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    assert left == ["etc/hostname", "etc/iscsi/initiatorname.iscsi", "etc/machine-id", "etc/shadow",
                    "etc/ssh/ssh_host_rsa_key", "etc/ssl/certs/ca-from-below.pem",
                    "etc/systemd/system/ssl-cert-snakeoil.service", "usr/share/old-file"]
    # The snakeoil key pair is every machine's own: its hash link goes too, and a unit makes it at first boot.
    assert sorted(p.name for p in (root / "etc/ssl/certs").iterdir()) == ["5ad8a5d6.0", "ca-from-below.pem"]
    unit = (root / "etc/systemd/system/ssl-cert-snakeoil.service").read_text()
    assert "make-ssl-cert generate-default-snakeoil" in unit and "ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key" in unit
    assert os.readlink(root / "etc/systemd/system/sysinit.target.wants/ssl-cert-snakeoil.service") == \
        "/etc/systemd/system/ssl-cert-snakeoil.service"
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "etc/hostname").read_text() == "localhost\n"  # cloud-init names the instance at boot
    assert (root / "etc/iscsi/initiatorname.iscsi").read_text() == "GenerateName=yes\n"  # open-iscsi makes one at first start
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    day = epoch // 86400
    assert (root / "etc/shadow").read_text() == f"root:*:{day}:0:99999:7:::\nnobody:*:{day}:0:99999:7:::\n"
    assert max(p.lstat().st_mtime for p in root.rglob("*")) == epoch
    assert (root / "usr/share/old-file").stat().st_mtime == epoch - 10  # not rewritten: it stays in its own layer
