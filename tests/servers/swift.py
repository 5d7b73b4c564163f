"""A one-node Swift with the S3 API (s3api), tempauth and memcached, on
127.0.0.1, configured in a temporary folder. Debian's swift packages
(scripts/setup-host.sh --test) provide the servers; they run under Debian's
own /usr/bin/python3, not the test virtualenv.

Swift reads /etc/swift/swift.conf whatever swift_dir says; Debian's package
ships one, and one is written there only where it is missing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.servers import Processes, free_port, wait_http

PYTHON = "/usr/bin/python3"
SWIFT_CONF = Path("/etc/swift/swift.conf")
ACCOUNT, USER = "factory", "tester"


@dataclass(frozen=True)
class SwiftServer:
    endpoint_url: str  # the proxy: S3 API at its root, Swift API under /v1
    access_key: str  # S3 access key ("account:user" for tempauth)
    secret_key: str  # S3 secret key (= the tempauth key)
    auth_url: str  # tempauth (v1.0) for native Swift
    user: str  # native Swift user, "account:user"
    key: str  # native Swift key
    region: str = "us-east-1"

    def aws_env(self) -> dict[str, str]:
        """The standard AWS variables that reach this server's S3 API."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}

    def s3_client(self):
        """boto3, path-style. Swift's s3api predates the default CRC
        checksums of boto3 >= 1.36, and its multi-object delete needs the
        Content-MD5 header those versions no longer send."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"),
        )
        client.meta.events.register("before-call.s3.DeleteObjects", add_content_md5)
        return client

    def token(self) -> tuple[str, str]:
        """(storage URL, auth token) from tempauth, for native Swift clients."""
        req = urllib.request.Request(self.auth_url, headers={"X-Auth-User": self.user, "X-Auth-Key": self.key})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]


def add_content_md5(params, **_):
    body = params["body"]
    if isinstance(body, str):
        body = body.encode()
    params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


def _conf(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def _backend_conf(kind: str, port: int, common: str) -> str:
    return f"""
[DEFAULT]
bind_port = {port}
{common}
[pipeline:main]
pipeline = healthcheck {kind}-server
[app:{kind}-server]
use = egg:swift#{kind}
[filter:healthcheck]
use = egg:swift#healthcheck
"""


# The proxy's middleware, in pipeline order: s3api before tempauth, slo
# after them (S3 multipart uploads are stored as static large objects).
_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth "
             "copy slo dlo proxy-logging proxy-server")
_PLAIN_FILTERS = ("catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "listing_formats", "bulk", "s3api",
                  "copy", "slo", "dlo")


def _proxy_conf(port: int, memcache_port: int, key: str, common: str) -> str:
    plain = "\n".join(f"[filter:{name}]\nuse = egg:swift#{name.replace('-', '_')}" for name in _PLAIN_FILTERS)
    return f"""
[DEFAULT]
bind_port = {port}
{common}
[pipeline:main]
pipeline = {_PIPELINE}
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:tempauth]
use = egg:swift#tempauth
user_{ACCOUNT}_{USER} = {key} .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcache_port}
{plain}
"""


def _ring(swift_dir: Path, kind: str, port: int) -> None:
    builder = str(swift_dir / f"{kind}.builder")
    for args in (["create", "4", "1", "1"], ["add", f"r1z1-127.0.0.1:{port}/d1", "100"], ["rebalance"]):
        p = subprocess.run([PYTHON, "/usr/bin/swift-ring-builder", builder, *args], capture_output=True, text=True)
        if p.returncode >= 2:  # 1 is a warning, not a failure
            raise RuntimeError(f"swift-ring-builder {' '.join(args)}: {p.stdout}{p.stderr}")


def _ensure_swift_conf() -> None:
    if SWIFT_CONF.exists():
        return
    SWIFT_CONF.parent.mkdir(parents=True, exist_ok=True)
    _conf(SWIFT_CONF, f"""
[swift-hash]
swift_hash_path_suffix = {secrets.token_hex(8)}
[storage-policy:0]
name = Policy-0
default = yes
""")


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[SwiftServer]:
    """Start memcached and the account, container, object and proxy servers;
    stop them all (by PID) when the block ends, also on failure."""
    for tool in ("/usr/bin/swift-proxy-server", "/usr/bin/memcached"):
        if not Path(tool).exists():
            raise RuntimeError(f"{tool} is missing; run scripts/setup-host.sh --test")
    _ensure_swift_conf()
    swift_dir, devices, logs = workdir / "etc", workdir / "srv", workdir / "log"
    for d in (swift_dir, devices / "d1", logs):
        d.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    common = (f"bind_ip = 127.0.0.1\nworkers = 0\nuser = {user}\nswift_dir = {swift_dir}\n"
              f"devices = {devices}\nmount_check = false\n")
    # A secret no test could mistake for anything else: the no-leak tests grep for it.
    key = f"swift-fake-secret-{secrets.token_hex(12)}"
    ports = {kind: free_port() for kind in ("account", "container", "object", "proxy", "memcache")}
    for kind in ("account", "container", "object"):
        _ring(swift_dir, kind, ports[kind])

    # The servers are Debian's; keep the virtualenv's Python out of their way.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    procs = Processes(logs)
    try:
        memcached = ["/usr/bin/memcached", "-l", "127.0.0.1", "-p", str(ports["memcache"]), "-U", "0", "-m", "64"]
        procs.start("memcached", memcached + (["-u", "nobody"] if os.geteuid() == 0 else []), env)
        started = {}
        for kind in ("account", "container", "object"):
            conf = _conf(swift_dir / f"{kind}-server.conf", _backend_conf(kind, ports[kind], common))
            started[kind] = procs.start(kind, [PYTHON, f"/usr/bin/swift-{kind}-server", str(conf), "-v"], env)
        conf = _conf(swift_dir / "proxy-server.conf", _proxy_conf(ports["proxy"], ports["memcache"], key, common))
        started["proxy"] = procs.start("proxy", [PYTHON, "/usr/bin/swift-proxy-server", str(conf), "-v"], env)
        for kind, proc in started.items():
            wait_http(f"http://127.0.0.1:{ports[kind]}/healthcheck", proc, procs, kind)
        url = f"http://127.0.0.1:{ports['proxy']}"
        server = SwiftServer(endpoint_url=url, access_key=f"{ACCOUNT}:{USER}", secret_key=key,
                             auth_url=f"{url}/auth/v1.0", user=f"{ACCOUNT}:{USER}", key=key)
        server.token()  # tempauth answers only once memcached does
        yield server
    finally:
        procs.stop_all()
        shutil.rmtree(devices, ignore_errors=True)
