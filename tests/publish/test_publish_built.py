"""A real debian/postgresql build published with `build --publish` to a real
Glance, S3 (Swift's S3 API) and Swift at once; then `publish` again, which
uploads nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import NATIVE_AGENT
from tests.publish.conftest import FAKE_OS_PASSWORD
from tests.publish.helpers import (clouds_yaml, glance_download, glance_image, glance_image_id, publish, sha256,
                                   swift_get, uploaded_events)

pytestmark = [pytest.mark.engine, pytest.mark.slow]
TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT]


def test_build_publishes_to_glance_s3_and_swift_and_a_second_publish_uploads_nothing(
        builder, glance_server, swift_server, tmp_path):
    s3 = swift_server.s3_client()
    s3.create_bucket(Bucket="built")
    storage_url, token = swift_server.token()
    env = {**swift_server.aws_env(), "OS_PASSWORD": FAKE_OS_PASSWORD,
           "OS_CLIENT_CONFIG_FILE": str(clouds_yaml(tmp_path, glance_url=glance_server.url, swift=(storage_url, token)))}
    secrets = [swift_server.secret_key, token, FAKE_OS_PASSWORD]
    where = ["--os-cloud", "test", "--s3-endpoint-url", swift_server.endpoint_url]

    build = publish("build", *TARGET, "--output", str(tmp_path / "out"), "--publish", "glance",
                    "--publish", "s3://built/guests", "--publish", "swift://built-native/guests", *where, env=env,
                    secrets=secrets)
    assert build.returncode == 0, build.stderr[-4000:]
    manifest_path = next(Path(line) for line in build.stdout.splitlines() if line.endswith(".manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    image = manifest["images"]["qcow2"]
    stem = manifest_path.name.removesuffix(".manifest.json")
    assert {e["to"] for e in uploaded_events(build)} == {"glance", f"s3://built/guests/{image['file']}",
                                                         f"swift://built-native/guests/{image['file']}"}

    # Glance: properties, tags, and the bytes.
    image_id = glance_image_id(build)
    conn = glance_server.connection()
    shown = glance_image(conn, image_id)
    assert shown["status"] == "active" and sorted(shown["tags"]) == ["postgresql", "trove"]
    assert (shown["os_distro"], shown["os_version"], shown["trove_datastore"]) == ("debian", "12", "postgresql")
    assert shown["trove_datastore_version"] == "15" and shown["factory_sha256"] == image["sha256"]
    assert shown["factory_key"] == manifest["assembly_key"] and shown["size"] == image["bytes"]
    assert sha256(glance_download(conn, image_id)) == image["sha256"]
    assert f"postgresql postgresql {image_id}" in build.stdout

    # S3: the image (in parts), its checksum, manifest and latest pointer.
    got = s3.get_object(Bucket="built", Key=f"guests/{image['file']}")
    assert got["ETag"].strip('"').endswith(f"-{-(-image['bytes'] // (64 << 20))}")
    assert sha256(got["Body"].read()) == image["sha256"]
    assert s3.get_object(Bucket="built", Key=f"guests/{stem}.manifest.json")["Body"].read() == manifest_path.read_bytes()
    pointer = json.loads(s3.get_object(Bucket="built", Key="guests/latest/debian-bookworm-postgresql-amd64.json")
                         ["Body"].read())
    assert pointer["image"] == f"s3://built/guests/{image['file']}" and pointer["sha256"] == image["sha256"]

    # Swift natively (another container: s3api keeps bucket "built" as Swift container "built",
    # where the S3 upload would already be found): a static large object.
    headers, body = swift_get(storage_url, token, f"built-native/guests/{image['file']}")
    assert headers.get("X-Static-Large-Object") == "True" and sha256(body) == image["sha256"]
    _, pointer = swift_get(storage_url, token, "built-native/guests/latest/debian-bookworm-postgresql-amd64.json")
    assert json.loads(pointer)["image"] == f"swift://built-native/guests/{image['file']}"

    again = publish("publish", str(manifest_path), "--to", "glance", "--to", "s3://built/guests",
                    "--to", "swift://built-native/guests", *where, env=env, secrets=secrets)
    assert again.returncode == 0, again.stderr[-3000:]
    assert glance_image_id(again) == image_id and not uploaded_events(again)
    assert again.stdout.count("already there, nothing uploaded") == 3
