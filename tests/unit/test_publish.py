"""The pure parts of publishing: targets, names, properties, masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory import log
from factory.errors import FactoryError
from factory.publish import failure, options, targets
from factory.publish import glance
from factory.publish.artifact import Artifact, load


def artifact(**target) -> Artifact:
    t = {"distro": "debian", "release": "bookworm", "arch": "amd64", "datastore": "postgresql",
         "datastore_version": None, **target}
    man = {"target": t, "assembly_key": "ab" * 32,
           "layers": [{"layer": "base", "packages_added": ["qemu-guest-agent=1:7.2", "postgresql=9"]},
                      {"layer": "datastore", "packages_added": ["postgresql-15=15.20-0", "postgresql=15+248+deb12u2"]}]}
    return Artifact(image=Path("/o/debian-bookworm-postgresql-abababababab.qcow2"),
                    manifest_path=Path("/o/debian-bookworm-postgresql-abababababab.manifest.json"),
                    manifest=man, format="qcow2", sha256="cd" * 32, bytes=123)


@pytest.mark.parametrize("text, want", [
    ("glance", targets.Glance()),
    ("s3://bucket", targets.S3("bucket", "")),
    ("s3://bucket/a/b/", targets.S3("bucket", "a/b")),
    ("swift://images/trove", targets.Swift("images", "trove")),
    ("file:///srv/images", targets.Directory(Path("/srv/images"))),
    ("out/published", targets.Directory(Path("out/published"))),
])
def test_targets_parse(text, want):
    assert targets.parse(text) == want


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("s3://", "names no bucket"),
    ("s3://key:secret@bucket/x", "never in the target"),
    ("swift:///x", "names no container"),
    ("http://host/x", "scheme 'http' is not known"),
    ("file://otherhost/x", "no local folder"),
    ("s3://b/x?acl=1", "query"),
])
def test_bad_targets_say_what_to_write(text, says):
    with pytest.raises(FactoryError, match=says):
        targets.parse(text)


def test_no_target_means_the_local_folder_and_duplicates_go_once():
    assert targets.parse_all([]) == [targets.Directory(targets.DEFAULT_DIR)]
    assert targets.parse_all(["glance", "glance", "s3://b/p"]) == [targets.Glance(), targets.S3("b", "p")]


def test_glance_properties_from_the_manifest_and_overrides():
    props = glance.properties(artifact(), {"hw_disk_bus": "scsi", "os_version": "12.8"})
    assert props == {
        "os_distro": "debian", "os_version": "12.8", "architecture": "x86_64", "trove_datastore": "postgresql",
        "trove_datastore_version": "15", "factory_key": "ab" * 32, "factory_sha256": "cd" * 32,
        "hw_qemu_guest_agent": "yes", "hw_disk_bus": "scsi",
    }
    assert glance.properties(artifact(release="jammy", distro="ubuntu", arch="arm64"), {})["os_version"] == "22.04"
    assert glance.properties(artifact(release="jammy", arch="arm64"), {})["architecture"] == "aarch64"
    assert glance.tags(artifact()) == ["trove", "postgresql"]


def test_datastore_version_asked_for_wins_over_the_installed_one():
    assert artifact().datastore_version() == "15"
    assert artifact(datastore_version="16").datastore_version() == "16"
    mariadb = artifact(datastore="mariadb")
    mariadb.manifest["layers"][1]["packages_added"] = ["mariadb-server=1:10.11.14-0+deb12u2"]
    assert mariadb.datastore_version() == "10.11.14"
    assert artifact(datastore="redis").datastore_version() is None
    container = artifact(env={"DATASTORE_IMAGE": "127.0.0.1:5000/postgres:16"})
    container.manifest["guest_agent"] = {"datastore_mode": "container"}
    assert container.datastore_version() == "16" and container.datastore_mode() == "container"
    assert glance.properties(container, {})["trove_datastore_mode"] == "container"


def test_glance_records_the_preloaded_images_source_and_digest():
    built = artifact(env={"DATASTORE_IMAGE": "postgres:15"})
    built.manifest["guest_agent"] = {"datastore_mode": "container"}
    built.manifest["datastore_images"] = [{"image": "postgres:15", "source": "distro", "id": "sha256:" + "e" * 64, "key": "f" * 64}]
    props = glance.properties(built, {})
    assert (props["trove_datastore_image"], props["trove_datastore_image_source"], props["trove_datastore_image_id"]) == (
        "postgres:15", "distro", "sha256:" + "e" * 64)
    assert props["trove_datastore_version"] == "15"
    several = artifact(datastore="postgresql,mariadb", env={"DATASTORE_IMAGE": "postgres:15 mariadb:10.11"})
    several.manifest["guest_agent"] = {"datastore_mode": "container"}
    assert several.datastore_version() is None  # one guest, two versions: the operator names each
    assert glance.tags(several) == ["trove", "postgresql", "mariadb"]


def test_trove_command_registers_the_image_as_a_datastore_version():
    assert glance.trove_command(artifact(), "1234-abcd") == (
        "openstack datastore version create --active --version-number 15 15 postgresql postgresql 1234-abcd")


def test_object_names_and_the_latest_pointer():
    a = artifact()
    assert a.object_names("/guests/") == {
        "image": "guests/debian-bookworm-postgresql-abababababab.qcow2",
        "checksum": "guests/debian-bookworm-postgresql-abababababab.qcow2.sha256",
        "manifest": "guests/debian-bookworm-postgresql-abababababab.manifest.json",
        "latest": "guests/latest/debian-bookworm-postgresql-amd64.json",
    }
    assert a.object_names("")["latest"] == "latest/debian-bookworm-postgresql-amd64.json"
    assert artifact(datastore_version="16", arch="arm64").latest_name() == "debian-bookworm-postgresql-16-arm64"
    pointer = json.loads(a.latest_pointer({"image": "s3://b/x.qcow2"}))
    assert pointer["image"] == "s3://b/x.qcow2" and pointer["sha256"] == "cd" * 32 and pointer["bytes"] == 123
    assert a.metadata()["factory-sha256"] == "cd" * 32 and a.metadata()["datastore-version"] == "15"


def test_options_are_checked():
    assert options(glance_property=["hw_disk_bus=virtio", "note=a=b"]).glance_properties == (
        ("hw_disk_bus", "virtio"), ("note", "a=b"))
    with pytest.raises(FactoryError, match="not KEY=VALUE"):
        options(glance_property=["novalue"])
    with pytest.raises(FactoryError, match="visibility 'everyone'"):
        options(visibility="everyone")


def test_load_refuses_an_image_that_is_not_what_its_manifest_says(tmp_path):
    image = tmp_path / "debian-bookworm-postgresql-abababababab.qcow2"
    image.write_bytes(b"1234")
    man = tmp_path / "debian-bookworm-postgresql-abababababab.manifest.json"
    man.write_text(json.dumps({"target": {}, "assembly_key": "ab", "images": {
        "qcow2": {"file": image.name, "bytes": 5, "sha256": "00"}}}))
    with pytest.raises(FactoryError, match="not the size"):
        load(man)
    with pytest.raises(FactoryError, match="not found"):
        load(tmp_path / "missing.qcow2")


def test_credentials_are_masked_in_errors():
    log.hide("s3cr3t-value-for-test")
    log.hide_environment({"OS_PASSWORD": "pw-from-env-xyz", "OS_REGION_NAME": "RegionOne"})
    error = failure("s3://b", RuntimeError("GET http://u:s3cr3t-value-for-test@h/ pw-from-env-xyz RegionOne"))
    assert "s3cr3t" not in str(error) and "pw-from-env" not in str(error) and "RegionOne" in str(error)
    lost = failure("glance", ConnectionRefusedError("[Errno 111] http://127.0.0.1:1/v2/images/x: refused"))
    assert str(lost) == ("publishing to glance failed: the server stopped answering or refused the connection "
                         "(http://127.0.0.1:1/v2/images/x)")
