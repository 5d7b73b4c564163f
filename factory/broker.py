"""A private RabbitMQ node for one conformance run: Debian's rabbitmq-server,
its own node name, ports, data folder and Erlang port mapper, bound to
127.0.0.1, stopped by PID when the run ends. Never a system service.

Every process it starts is recorded in the run's folder with its PID, so a
later run can stop what a killed one left (`sweep`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from factory import log
from factory.errors import Unavailable
from factory.settings import state_dir

_log = log.get("broker")
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
START_SECONDS = 90


@dataclass(frozen=True)
class Broker:
    port: int
    user: str
    password: str

    def url(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        return f"rabbit://{self.user}:{self.password}@{host}:{port or self.port}/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    """The AMQP listener takes a connection and answers a protocol header."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(8).startswith(b"\x01")  # connection.start frame
    except OSError:
        return False


def _runs_root() -> Path:
    return state_dir() / "brokers"


def _stop(pid: int) -> None:
    """Stop a process group we started, politely first."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            time.sleep(0.2)


def sweep() -> None:
    """Stop brokers whose owning factory process is gone (a SIGKILLed run)."""
    root = _runs_root()
    if not root.is_dir():
        return
    for run in root.iterdir():
        owner = run / "owner"
        try:
            os.kill(int(owner.read_text()), 0)
            continue  # its owner still runs
        except (OSError, ValueError):
            pass
        for pidfile in run.glob("*.pid"):
            try:
                _stop(int(pidfile.read_text()))
            except ValueError:
                pass
        shutil.rmtree(run, ignore_errors=True)
        _log.info("removed a broker left by a stopped run", folder=str(run))


@contextmanager
def private_broker() -> Iterator[Broker]:
    if not os.path.exists(SERVER) or not shutil.which("epmd"):
        raise Unavailable("rabbitmq-server is missing; run ./factory.sh once (it installs it) or apt-get install rabbitmq-server")
    sweep()
    root = _runs_root()
    root.mkdir(parents=True, exist_ok=True)
    run = root / f"run-{os.getpid()}-{secrets.token_hex(4)}"
    run.mkdir()
    (run / "owner").write_text(str(os.getpid()))
    broker = Broker(port=free_port(), user="factory", password=secrets.token_hex(12))
    epmd_port, dist_port = free_port(), free_port()
    (run / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{broker.port}\n"
        "loopback_users = none\n"
        f"default_user = {broker.user}\n"
        f"default_pass = {broker.password}\n"
        "log.console = false\n"
    )
    (run / "enabled_plugins").write_text("[].\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(run),  # the Erlang cookie lives here
        "RABBITMQ_NODENAME": f"factory-{run.name}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(broker.port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(run / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(run / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(run / "mnesia"),
        "RABBITMQ_LOG_BASE": str(run / "log"),
        "RABBITMQ_PID_FILE": str(run / "rabbitmq.pidfile"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
        # Our own port mapper (started below, stopped by PID), not a daemon
        # that outlives the run.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
        "LANG": "C.UTF-8",
    }
    started: list[int] = []
    try:
        epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(epmd.pid)
        (run / "epmd.pid").write_text(str(epmd.pid))
        with open(run / "server.out", "wb") as out:
            server = subprocess.Popen([SERVER], env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        started.append(server.pid)
        (run / "server.pid").write_text(str(server.pid))
        begun = time.monotonic()
        while not _answers(broker.port):
            if server.poll() is not None or time.monotonic() - begun > START_SECONDS:
                tail = (run / "server.out").read_text(errors="replace").strip().splitlines()[-3:]
                raise Unavailable(f"the private RabbitMQ node did not start ({' | '.join(tail) or 'no output'}); "
                                   "or pass --transport-url to use a broker of your own")
            time.sleep(0.5)
        _log.info("message queue ready", port=broker.port, seconds=round(time.monotonic() - begun, 1))
        yield broker
    finally:
        for pid in reversed(started):
            _stop(pid)
        shutil.rmtree(run, ignore_errors=True)
