"""`factory publish` against a real Glance and a real Swift (native and S3
API), with a small real qcow2. Every run's output is searched for the test
servers' credentials."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from factory.errors import FactoryError
from factory.publish import Options, publish
from factory.publish import artifact as artifacts
from factory.publish import targets
from tests.conftest import FACTORY
from tests.publish.conftest import FAKE_OS_PASSWORD, make_artifact
from tests.publish.helpers import (clouds_yaml, error_lines, glance_download, glance_image, glance_image_id,
                                   manifest_sha256, publish as run_publish, sha256, swift_get, uploaded_events)
from tests.servers import glance

pytestmark = pytest.mark.servers  # starts a real Glance / Swift on 127.0.0.1


@pytest.fixture
def glance_env(glance_server, tmp_path):
    return {"OS_CLIENT_CONFIG_FILE": str(clouds_yaml(tmp_path, glance_url=glance_server.url)),
            "OS_PASSWORD": FAKE_OS_PASSWORD}


@pytest.fixture
def s3_env(swift_server):
    return {**swift_server.aws_env(), "OS_PASSWORD": FAKE_OS_PASSWORD}


@pytest.fixture
def swift_env(swift_server, tmp_path):
    storage_url, token = swift_server.token()
    return {"OS_CLIENT_CONFIG_FILE": str(clouds_yaml(tmp_path, swift=(storage_url, token))),
            "OS_PASSWORD": FAKE_OS_PASSWORD}


def secrets_of(swift_server) -> list[str]:
    return [swift_server.secret_key, swift_server.token()[1], FAKE_OS_PASSWORD]


def test_glance_publish_sets_properties_tags_and_bytes_then_uploads_nothing_twice(
        glance_server, glance_env, swift_server, small_artifact):
    args = ["publish", str(small_artifact), "--to", "glance", "--os-cloud", "test", "--visibility", "public",
            "--glance-property", "hw_disk_bus=virtio"]
    first = run_publish(*args, env=glance_env, secrets=secrets_of(swift_server))
    assert first.returncode == 0, first.stderr[-3000:]
    image_id = glance_image_id(first)
    assert f"openstack datastore version create --active --version-number 15 15 postgresql postgresql {image_id}" \
        in first.stdout

    conn = glance_server.connection()
    shown = glance_image(conn, image_id)
    want_sha = manifest_sha256(small_artifact)
    assert shown["status"] == "active" and shown["visibility"] == "public"
    assert (shown["disk_format"], shown["container_format"]) == ("qcow2", "bare")
    assert sorted(shown["tags"]) == ["postgresql", "trove"]
    assert shown["name"] == small_artifact.name.removesuffix(".manifest.json")
    for key, value in {"os_distro": "debian", "os_version": "12", "architecture": "x86_64",
                       "trove_datastore": "postgresql", "trove_datastore_version": "15", "factory_sha256": want_sha,
                       "factory_key": "0f" * 32, "hw_disk_bus": "virtio"}.items():
        assert shown.get(key) == value, key
    assert sha256(glance_download(conn, image_id)) == want_sha

    second = run_publish(*args, "--glance-property", "site_note=second", env=glance_env,
                         secrets=secrets_of(swift_server))
    assert second.returncode == 0, second.stderr[-3000:]
    assert glance_image_id(second) == image_id
    assert "already there, nothing uploaded" in second.stdout and not uploaded_events(second)
    assert glance_image(conn, image_id)["site_note"] == "second"  # properties follow, bytes stay
    same = [i for i in conn.image.images() if (i.properties or {}).get("factory_sha256") == want_sha]
    assert [i.id for i in same] == [image_id]


def _store_has_data(store: Path) -> bool:
    return any(p.stat().st_size > 0 for p in store.iterdir()) if store.exists() else False


def test_glance_stopped_mid_upload_fails_clearly_and_leaves_nothing_half_made(tmp_path, swift_server):
    manifest = make_artifact(tmp_path / "big", 256, key="1e" * 32)
    want_sha = manifest_sha256(manifest)
    with glance.running(tmp_path / "glance") as server:
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml(tmp_path, glance_url=server.url)),
               "OS_PASSWORD": FAKE_OS_PASSWORD}
        cli = subprocess.Popen([FACTORY, "--log-format", "json", "publish", str(manifest), "--to", "glance",
                                "--os-cloud", "test"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        deadline = time.monotonic() + 60
        while not _store_has_data(server.store) and cli.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert cli.poll() is None, "the upload ended before Glance could be stopped in the middle of it"
        server.stop()  # SIGKILL: Glance gets no chance to tidy up
        stdout, stderr = cli.communicate(timeout=120)
        assert cli.returncode == 6, stderr[-3000:]  # unavailable: worth a retry (README: exit codes)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: publishing to glance failed:"), errors
        assert "stopped answering" in errors[0] and "next publish removes it" in errors[0]
        for secret in (FAKE_OS_PASSWORD, swift_server.secret_key):
            assert secret not in stdout + stderr

        server.start()
        conn = server.connection()
        left = [(i.id, i.status) for i in conn.image.images() if (i.properties or {}).get("factory_sha256")]
        assert all(status != "active" for _, status in left)  # the half-made one, if any, is not usable

        again = run_publish("publish", str(manifest), "--to", "glance", "--os-cloud", "test", env=env,
                            secrets=[FAKE_OS_PASSWORD])
        assert again.returncode == 0, again.stderr[-3000:]
        image_id = glance_image_id(again)
        ours = [(i.id, i.status) for i in conn.image.images() if (i.properties or {}).get("factory_sha256")]
        assert ours == [(image_id, "active")]
        removed = {e["image_id"] for e in again.events() if e.get("event", "").startswith("removing an unfinished")}
        assert removed == {i for i, _ in left}
        assert sha256(glance_download(conn, image_id)) == want_sha


def _s3_objects(s3, bucket: str) -> dict[str, dict]:
    return {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_s3_publish_through_swift_s3api(swift_server, s3_env, small_artifact):
    s3 = swift_server.s3_client()
    s3.create_bucket(Bucket="trove-images")
    args = ["publish", str(small_artifact), "--to", "s3://trove-images/guests/", "--s3-endpoint-url",
            swift_server.endpoint_url]
    first = run_publish(*args, env=s3_env, secrets=secrets_of(swift_server))
    assert first.returncode == 0, first.stderr[-3000:]

    stem = small_artifact.name.removesuffix(".manifest.json")
    keys = set(_s3_objects(s3, "trove-images"))
    assert {f"guests/{stem}.qcow2", f"guests/{stem}.qcow2.sha256", f"guests/{stem}.manifest.json",
            "guests/latest/debian-bookworm-postgresql-amd64.json"} <= keys
    want_sha = manifest_sha256(small_artifact)
    image = s3.get_object(Bucket="trove-images", Key=f"guests/{stem}.qcow2")
    assert sha256(image["Body"].read()) == want_sha
    assert image["Metadata"]["factory-sha256"] == want_sha and image["Metadata"]["datastore"] == "postgresql"
    pointer = json.loads(s3.get_object(Bucket="trove-images", Key="guests/latest/debian-bookworm-postgresql-amd64.json")
                         ["Body"].read())
    assert pointer["image"] == f"s3://trove-images/guests/{stem}.qcow2" and pointer["sha256"] == want_sha
    published_manifest = s3.get_object(Bucket="trove-images", Key=f"guests/{stem}.manifest.json")["Body"].read()
    assert published_manifest == small_artifact.read_bytes()

    second = run_publish(*args, env=s3_env, secrets=secrets_of(swift_server))
    assert second.returncode == 0 and "already there, nothing uploaded" in second.stdout
    assert not uploaded_events(second)


def test_s3_multipart_parts_are_checked_and_assemble_to_the_same_bytes(swift_server, s3_env, small_artifact,
                                                                       monkeypatch):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    s3 = swift_server.s3_client()
    s3.create_bucket(Bucket="multipart")
    art = artifacts.load(small_artifact)
    result = publish(art, targets.parse("s3://multipart/p"), Options(s3_endpoint_url=swift_server.endpoint_url,
                                                                     part_size=5 << 20))
    assert result.uploaded
    head = s3.head_object(Bucket="multipart", Key=f"p/{art.image.name}")
    parts = -(-art.bytes // (5 << 20))
    assert parts > 1 and head["ETag"].strip('"').endswith(f"-{parts}")
    body = s3.get_object(Bucket="multipart", Key=f"p/{art.image.name}")["Body"].read()
    assert sha256(body) == art.sha256
    assert not s3.list_multipart_uploads(Bucket="multipart").get("Uploads")


def test_swift_native_publish_and_segments(swift_server, swift_env, small_artifact, monkeypatch):
    storage_url, token = swift_server.token()
    first = run_publish("publish", str(small_artifact), "--to", "swift://guests/trove", "--os-cloud", "test",
                        env=swift_env, secrets=secrets_of(swift_server))
    assert first.returncode == 0, first.stderr[-3000:]
    stem = small_artifact.name.removesuffix(".manifest.json")
    headers, body = swift_get(storage_url, token, f"guests/trove/{stem}.qcow2")
    want_sha = manifest_sha256(small_artifact)
    assert sha256(body) == want_sha and headers["X-Object-Meta-Factory-Sha256"] == want_sha
    _, checksum = swift_get(storage_url, token, f"guests/trove/{stem}.qcow2.sha256")
    assert checksum.split()[0].decode() == want_sha
    _, manifest = swift_get(storage_url, token, f"guests/trove/{stem}.manifest.json")
    assert manifest == small_artifact.read_bytes()
    _, pointer = swift_get(storage_url, token, "guests/trove/latest/debian-bookworm-postgresql-amd64.json")
    assert json.loads(pointer)["image"] == f"swift://guests/trove/{stem}.qcow2"

    second = run_publish("publish", str(small_artifact), "--to", "swift://guests/trove", "--os-cloud", "test",
                         env=swift_env, secrets=secrets_of(swift_server))
    assert second.returncode == 0 and "already there, nothing uploaded" in second.stdout

    # A segmented upload (a static large object), through the same code with small segments.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", swift_env["OS_CLIENT_CONFIG_FILE"])
    art = artifacts.load(small_artifact)
    publish(art, targets.parse("swift://segmented"), Options(os_cloud="test", part_size=5 << 20))
    headers, body = swift_get(storage_url, token, f"segmented/{art.image.name}")
    assert headers.get("X-Static-Large-Object") == "True" and sha256(body) == art.sha256
    _, listing = swift_get(storage_url, token, "segmented_segments?format=json")
    assert len(json.loads(listing)) == -(-art.bytes // (5 << 20))


def test_no_credential_in_errors_logs_or_published_files(swift_server, s3_env, small_artifact, tmp_path):
    secret = swift_server.secret_key
    # An endpoint that carries the secret and answers nothing: the error must still not show it.
    closed = f"http://user:{secret}@127.0.0.1:9/"
    run = run_publish("publish", str(small_artifact), "--to", "s3://trove-images", "--s3-endpoint-url", closed,
                      env=s3_env, secrets=secrets_of(swift_server))
    assert run.returncode == 6 and len(error_lines(run)) == 1  # nothing answers there
    assert "***" in error_lines(run)[0] or "127.0.0.1" in error_lines(run)[0]

    missing_bucket = run_publish("publish", str(small_artifact), "--to", "s3://no-such-bucket", "--s3-endpoint-url",
                                 swift_server.endpoint_url, env=s3_env, secrets=secrets_of(swift_server))
    assert missing_bucket.returncode == 5  # publish failure: the server refused (README: exit codes)
    assert error_lines(missing_bucket)[0].startswith("error: publishing to s3://no-such-bucket failed:")
    assert "exists" in error_lines(missing_bucket)[0]

    local = run_publish("publish", str(small_artifact), "--to", str(tmp_path / "out"), env=s3_env,
                        secrets=secrets_of(swift_server))
    assert local.returncode == 0
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix != ".qcow2":
            text = path.read_text()
            assert not any(s in text for s in secrets_of(swift_server)), path


def test_an_upload_that_fails_midway_leaves_no_object_parts_or_segments(swift_server, s3_env, swift_env,
                                                                        small_artifact, monkeypatch):
    """The image's bytes stop matching its manifest: found after every part is up, before the object exists."""
    for k, v in {**s3_env, **swift_env}.items():
        monkeypatch.setenv(k, v)
    s3 = swift_server.s3_client()
    s3.create_bucket(Bucket="failing")
    wrong = replace(artifacts.load(small_artifact), sha256="0" * 64)
    small_parts = Options(os_cloud="test", s3_endpoint_url=swift_server.endpoint_url, part_size=5 << 20)
    for target in ("s3://failing/p", "swift://failing-native/p"):
        with pytest.raises(FactoryError, match="changed while it was published"):
            publish(wrong, targets.parse(target), small_parts)
    assert not s3.list_objects_v2(Bucket="failing").get("Contents")
    assert not s3.list_multipart_uploads(Bucket="failing").get("Uploads")
    storage_url, token = swift_server.token()
    for container in ("failing-native", "failing-native_segments"):
        _, listing = swift_get(storage_url, token, f"{container}?format=json")
        assert json.loads(listing) == [], container
