"""Remote cache servers for the tests (real ones, on 127.0.0.1) and the one
layer stack they share: a debian/postgresql target made unique to this session
by an --env value, so that its layers can leave the local store and come back
without touching the layers the rest of the suite (and other builds) use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tests.conftest import NATIVE_AGENT, Run, factory
from tests.servers.registry import Registry, flip_byte


@dataclass
class OciServer:
    registry: Registry
    kind: str = "oci"
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.registry.url

    def objects(self) -> dict[str, int]:
        return self.registry.blobs()

    def tamper(self, key: str) -> str:
        """One byte flipped in the topmost diff of the layer; its digest."""
        digest = self.registry.manifest(key)["layers"][-1]["digest"]
        flip_byte(self.registry.blob_file(digest))
        return digest


@dataclass
class S3Server:
    """A bucket on the test Swift, through its S3 API."""

    swift: object  # tests.servers.swift.SwiftServer
    bucket: str = "factory-cache"
    prefix: str = "team/layers"
    kind: str = "s3"

    def __post_init__(self):
        self.s3 = self.swift.s3_client()
        if self.bucket not in {b["Name"] for b in self.s3.list_buckets()["Buckets"]}:
            self.s3.create_bucket(Bucket=self.bucket)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def args(self) -> list[str]:
        return ["--s3-endpoint-url", self.swift.endpoint_url]

    @property
    def env(self) -> dict[str, str]:
        return self.swift.aws_env()

    def objects(self) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def tamper(self, key: str) -> str:
        """One byte flipped in the topmost diff of the layer, written back over it; its digest."""
        record = json.loads(self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/layers/{key}.json")["Body"].read())
        digest = record["layers"][-1]
        name = f"{self.prefix}/blobs/sha256/{digest.split(':', 1)[1]}"
        data = bytearray(self.s3.get_object(Bucket=self.bucket, Key=name)["Body"].read())
        data[len(data) // 2] ^= 0xFF
        self.s3.put_object(Bucket=self.bucket, Key=name, Body=bytes(data))
        return digest


@pytest.fixture(scope="module", params=["oci", "s3"])
def server(request):
    """Each module's tests run once against a registry, once against S3."""
    if request.param == "oci":
        return OciServer(request.getfixturevalue("registry"))
    return S3Server(request.getfixturevalue("swift_server"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    server = Registry(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack():
    """Build arguments of the remote tests' own debian/postgresql stack: a
    setting of their own gives it keys of its own, so that forgetting its
    layers (as another machine would not have them) never touches the
    layers the rest of the suite uses. The value is fixed, so a later run on
    this machine finds the stack in the local store (the tests leave it
    there, pulled back) and machine A only pushes it."""
    return ["--distro", "debian", "--release", "bookworm", *NATIVE_AGENT, "--env", "FACTORY_REMOTE_TEST=remote-cache",
            "--format", "tar"]


def keys(*args: str, env: dict | None = None) -> dict[str, str]:
    run = factory("plan", "--as", "json", *args, env=env)
    assert run.returncode == 0, run.stderr
    return {l["layer"]: l["key"] for l in json.loads(run.stdout)[0]["layers"] if l["layer"] != "assemble"}


def events(run: Run, name: str) -> dict[str, dict]:
    return {e["layer"]: e for e in run.events() if e.get("event") == name}


def forget(key: str) -> None:
    """The local store loses a layer and those built on it, as on another machine."""
    run = factory("layers", "rm", key)
    assert run.returncode == 0, run.stderr
