"""Running `factory publish` against the test servers, and reading back what
it left there with clients of the tests' own (not the factory's code)."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

from tests.conftest import Run, factory


def publish(*args: str, env: dict[str, str], secrets: list[str]) -> Run:
    """`factory publish` (or `build`); no secret may appear in what it printed."""
    run = factory(*args, env=env, timeout=600)
    for secret in secrets:
        assert secret not in run.stdout and secret not in run.stderr, f"a credential leaked into the output of {args[0]}"
    return run


def error_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


def uploaded_events(run: Run) -> list[dict]:
    return [e for e in run.events() if e.get("event") == "uploaded"]


def glance_image_id(run: Run) -> str:
    line = next(line for line in run.stdout.splitlines() if line.startswith("glance: "))
    return line.split()[1]


def glance_image(conn, image_id: str) -> dict:
    """`openstack image show`: attributes and properties, flat."""
    d = conn.image.get_image(image_id).to_dict()
    return {**{k: v for k, v in d.items() if k != "properties"}, **(d.get("properties") or {})}


def glance_download(conn, image_id: str) -> bytes:
    return b"".join(conn.image.download_image(image_id, stream=True).iter_content(1 << 20))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_sha256(manifest: Path) -> str:
    return next(iter(json.loads(manifest.read_text())["images"].values()))["sha256"]


def swift_get(storage_url: str, token: str, path: str, method: str = "GET") -> tuple[dict, bytes]:
    req = urllib.request.Request(f"{storage_url}/{path}", headers={"X-Auth-Token": token}, method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        return dict(r.headers), r.read()


def clouds_yaml(folder: Path, glance_url: str | None = None, swift: tuple[str, str] | None = None) -> Path:
    """A clouds.yaml with one cloud, `test`: Glance unauthenticated, and/or
    Swift through a tempauth token and its storage URL (openstacksdk's
    admin_token: a token and an endpoint)."""
    cloud = {"auth_type": "none"}
    if swift:
        storage_url, token = swift
        cloud = {"auth_type": "admin_token", "auth": {"token": token, "endpoint": storage_url},
                 "object_store_endpoint_override": storage_url}
    if glance_url:
        cloud["image_endpoint_override"] = glance_url
    path = folder / "clouds.yaml"
    path.write_text(json.dumps({"clouds": {"test": cloud}}))  # JSON is YAML
    return path
