"""A standalone Glance (Debian's glance-api) on 127.0.0.1: sqlite, a file
store, one process (workers = 0), no Keystone.

Without a paste `flavor`, Glance serves the unauthenticated-context pipeline:
every request is an admin without roles, which the default policy does not
let publish public images, hence the policy file opening `publicize_image`."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tests.servers import Processes, free_port, wait_http

PYTHON = "/usr/bin/python3"
PASTE_INI = Path("/etc/glance/glance-api-paste.ini")


@dataclass
class GlanceServer:
    url: str  # the root URL: openstacksdk wants it as image_endpoint_override, not .../v2
    store: Path  # where the file store keeps image data
    _procs: Processes = field(repr=False)
    _argv: list[str] = field(repr=False)
    _env: dict[str, str] = field(repr=False)
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self._proc = self._procs.start("glance-api", self._argv, self._env)
        wait_http(f"{self.url}/versions", self._proc, self._procs, "glance-api")

    def stop(self) -> None:
        """Like a crash: SIGKILL, so that nothing is tidied on the way out."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._procs.running.remove(self._proc)
            self._proc = None

    def connection(self):
        """openstacksdk, unauthenticated, straight at this Glance."""
        import openstack

        return openstack.connect(auth_type="none", image_endpoint_override=self.url, load_yaml_config=False,
                                 load_envvars=False)


def _conf(workdir: Path, port: int) -> Path:
    data, staging, tasks = workdir / "images", workdir / "staging", workdir / "tasks"
    for d in (data, staging, tasks):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(PASTE_INI, workdir / "glance-api-paste.ini")
    (workdir / "policy.yaml").write_text('"publicize_image": ""\n')
    conf = workdir / "glance-api.conf"
    conf.write_text(f"""
[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
workers = 0
enabled_backends = file:file
log_file = {workdir / 'glance-api.log'}
[database]
connection = sqlite:///{workdir / 'glance.sqlite'}
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = {data}
[os_glance_staging_store]
filesystem_store_datadir = {staging}
[os_glance_tasks_store]
filesystem_store_datadir = {tasks}
[paste_deploy]
config_file = {workdir / 'glance-api-paste.ini'}
[oslo_policy]
policy_file = {workdir / 'policy.yaml'}
""".lstrip())
    return conf


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[GlanceServer]:
    """Glance up on a free loopback port; stopped (by PID) when the block ends."""
    if not Path("/usr/bin/glance-api").exists():
        raise RuntimeError("/usr/bin/glance-api is missing; run scripts/setup-host.sh --test")
    port = free_port()
    conf = _conf(workdir, port)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    sync = subprocess.run([PYTHON, "/usr/bin/glance-manage", "--config-file", str(conf), "db_sync"],
                          capture_output=True, text=True, env=env)
    if sync.returncode != 0:
        raise RuntimeError(f"glance-manage db_sync failed:\n{sync.stderr[-3000:]}")
    procs = Processes(workdir)
    server = GlanceServer(url=f"http://127.0.0.1:{port}", store=workdir / "images", _procs=procs,
                          _argv=[PYTHON, "/usr/bin/glance-api", "--config-file", str(conf)], _env=env)
    try:
        server.start()
        yield server
    finally:
        procs.stop_all()
