"""`factory verify --trove`: Trove drives the booted guest, as it drives an
instance it creates, and every call is a check.

The guest is booted as verify boots it, with two differences: the agent's
config names a real message queue (a private RabbitMQ node on 127.0.0.1, or
the operator's `--transport-url`), which the guest reaches through qemu's
guestfwd (socat, one connection per guest connection: oslo.messaging opens
several), and the datastore's port is forwarded to 127.0.0.1 so that its own
client can log in from the host. Trove's own guest API client
(factory/trove_driver.py, in the venv of factory/trove_client.py) then sends
what TaskManager sends: rpc_ping until the agent answers, prepare with a
volume, the config rendered from the agent release's template, a database
and a user; then database and user calls, volume info, restart.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from factory import broker, log, trove_client
from factory.errors import FactoryError
from factory.verify import AGENT_CONF_PATH, GUEST_INFO_PATH, MARK, Check, Guest, guest_info, probe

_log = log.get("conformance")
# Where the guest finds the message queue: an address of qemu's user network
# that guestfwd hands to the broker on the host.
GUEST_BROKER = ("10.0.2.100", 5672)
PORTS = {"mysql": 3306, "mariadb": 3306, "percona": 3306, "postgresql": 5432, "redis": 6379}
# The datastore version's `packages`, as an operator registers them with
# trove-manage and TaskManager passes them to prepare (an installed package is
# left alone; 13.x agents fail without the list).
PACKAGES = {"mysql": "mysql-server", "mariadb": "mariadb-server", "percona": "percona-server-server",
            "postgresql": "postgresql", "redis": "redis-server"}
DELIVERIES = ("files", "cloud-config")
# Agent releases before these understand RPC versions up to the value.
RPC_CAPS = (((14, 0), "1.0"), ((23, 0), "1.1"), ((26, 0), "1.2"))
DRIVE_SECONDS = 1500


def rpc_cap(agent_release: tuple[int, int] | None) -> str:
    for below, cap in RPC_CAPS:
        if agent_release is not None and agent_release < below:
            return cap
    return "latest"


def default_delivery(agent_release: tuple[int, int] | None) -> str:
    """Ussuri-era TaskManagers inject files through Nova; current ones write
    them with cloud-config user data."""
    return "files" if agent_release is not None and agent_release < (14, 0) else "cloud-config"


def agent_conf(transport_url: str) -> str:
    return ("[DEFAULT]\n"
            "debug = True\n"
            f"transport_url = {transport_url}\n"
            "control_exchange = trove\n")


@dataclass
class Conformance:
    """The verify.Driver that lets Trove drive the guest."""

    python: Path
    guest_url: str  # the broker as the guest reaches it
    forwards: tuple[str, ...]
    delivery_mode: str
    report_path: Path
    job: dict  # what the calls need to know of this guest (trove_driver.py)

    def delivery(self, guest_info_text: str, guest: Guest) -> tuple[dict[str, str], str]:
        files = {GUEST_INFO_PATH: guest_info_text, AGENT_CONF_PATH: agent_conf(self.guest_url)}
        script = probe(guest.logdir, follow_agent_log=True)
        if self.delivery_mode == "files":
            return files, script
        return {}, self._run_driver("userdata", {"files": files, "probe": script, "owner": guest.user})

    def _run_driver(self, mode: str, job: dict, timeout: int = 120) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(job, f)
            f.flush()
            p = subprocess.run([str(self.python), str(trove_client.DRIVER), mode, f.name],
                               capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise FactoryError(f"Trove's client failed ({' | '.join(p.stderr.strip().splitlines()[-2:])})")
        return p.stdout

    def drive(self, console: Path) -> list[Check]:
        began = time.monotonic()
        _log.info("Trove drives the guest", calls="rpc_ping, prepare, databases, users, volume, restart")
        try:
            out = self._run_driver("drive", self.job, timeout=DRIVE_SECONDS)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        checks = []
        for line in out.splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            checks.append(Check(f"trove: {r['call']} ({r['seconds']}s)", r["ok"], r["evidence"]))
            _log.info("trove call", call=r["call"], ok=r["ok"], seconds=r["seconds"])
        if not checks:
            checks.append(Check("trove: calls", False, f"Trove's client gave no result in {time.monotonic() - began:.0f}s"))
        failed = next((c for c in checks if not c.passed), None)
        if failed:
            failed.evidence += agent_log_tail(console.read_text(errors="replace"))
        self.report_path.write_text(json.dumps(
            {"calls": [{"check": c.name, "passed": c.passed, "evidence": c.evidence} for c in checks],
             "rpc_cap": self.job["rpc_cap"], "delivery": self.delivery_mode}, indent=2) + "\n")
        return checks


def agent_log_tail(console_text: str, lines: int = 6) -> str:
    """The agent's last warnings and errors, as the guest sent them to the console."""
    picked = [l.split("agent-log: ", 1)[1].strip() for l in console_text.splitlines() if f"{MARK} agent-log: " in l]
    worth = [l for l in picked if re.search(r"ERROR|WARNING|Error|Exception|Traceback", l)] or picked
    return ("; agent log: " + " | ".join(l[:240] for l in worth[-lines:])) if worth else ""


@contextmanager
def conformance(image: Path, guest: Guest, agent_version: str | None, agent_release: tuple[int, int] | None,
                transport_url: str | None = None, delivery: str | None = None, key_override: str | None = None,
                memory_mb: int = 1536, ping_wait: int = 240, first_heartbeat: int = 180) -> Iterator[Conformance]:
    """Everything a conformance run needs, released when it ends: the broker,
    Trove's client, the ports. key_override drives the guest with another
    key than the one it was given (a test of the failure)."""
    if guest.datastore not in PORTS:
        raise FactoryError(f"verify --trove knows no client for {guest.datastore}; "
                           f"it drives {', '.join(sorted(PORTS))}")
    delivery = delivery or default_delivery(agent_release)
    if delivery not in DELIVERIES:
        raise FactoryError(f"--config-delivery '{delivery}' is not known; use files or cloud-config")
    if transport_url:
        m = re.match(r"rabbit://([^@/]*@)?(127\.0\.0\.1|localhost):(\d+)(/.*)?$", transport_url)
        if not m:
            raise FactoryError("--transport-url must name a RabbitMQ on this host, "
                               "e.g. rabbit://USER:PASS@127.0.0.1:5672/ (the guest reaches only 127.0.0.1)")
    info = guest_info(guest.datastore, guest.version)
    python = trove_client.python()
    templates = trove_client.templates(agent_version or trove_client.CLIENT_VERSION)
    with ExitStack() as stack:
        if transport_url:
            host_url, broker_port = transport_url, int(m.group(3))
            guest_url = transport_url.replace(f"{m.group(2)}:{m.group(3)}", f"{GUEST_BROKER[0]}:{GUEST_BROKER[1]}")
        else:
            b = stack.enter_context(broker.private_broker())
            host_url, broker_port, guest_url = b.url(), b.port, b.url(*GUEST_BROKER)
        ds_port = broker.free_port()
        forwards = (f"guestfwd=tcp:{GUEST_BROKER[0]}:{GUEST_BROKER[1]}-cmd:socat - TCP:127.0.0.1:{broker_port}",
                    f"hostfwd=tcp:127.0.0.1:{ds_port}-:{PORTS[guest.datastore]}")
        job = {
            "transport_url": host_url,
            "guest_id": re.search(r"guest_id=(\S+)", info).group(1),
            "key": key_override or re.search(r"instance_rpc_encr_key=(\S+)", info).group(1),
            "rpc_cap": rpc_cap(agent_release),
            "datastore": guest.datastore,
            "version": guest.version or "default",
            "packages": PACKAGES[guest.datastore],
            "template_dir": str(templates),
            "memory_mb": memory_mb,
            "device_path": "/dev/vdb",
            "database": "factorydb",
            "user": "factory",
            "password": secrets.token_hex(10),
            "host_port": ds_port,
            "boot_wait": ping_wait,  # once the probe is done, the agent has started
            "prepare_wait": 900,
            "first_heartbeat": first_heartbeat,
            "call_timeout": 300,
        }
        yield Conformance(python=python, guest_url=guest_url, forwards=forwards, delivery_mode=delivery,
                          report_path=image.with_name(image.name + ".trove.json"), job=job)


def agent_of(man: dict) -> tuple[str | None, tuple[int, int] | None, str | None]:
    """(agent version, (major, minor), why it cannot be driven or None) from a manifest."""
    agent = man.get("guest_agent") or {}
    version = agent.get("version") if agent.get("source") == "pypi" else None
    release = None
    if version:
        parts = re.findall(r"\d+", version)
        release = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    why = None
    if agent.get("source") == "runtime":
        why = "a development agent (it fetches its code from a controller at boot)"
    elif man["target"]["datastore"] not in PORTS:
        # Also a guest with no datastore (the generic guest) or several images.
        why = f"no client for {man['target']['datastore'] or 'a guest without a datastore'}"
    return version, release, why


def verify_with_trove(image: Path, guest: Guest, man: dict | None, transport_url: str | None = None,
                      delivery: str | None = None, key_override: str | None = None, ping_wait: int = 240,
                      first_heartbeat: int = 180, **boot):
    """verify's boot, then Trove drives the guest."""
    from factory import verify as verifying

    version, release, why = agent_of(man) if man else (None, None, None)
    if why:
        raise FactoryError(f"verify --trove cannot drive this image: {why}; run verify without --trove")
    with conformance(image, guest, version, release, transport_url=transport_url, delivery=delivery,
                     key_override=key_override, ping_wait=ping_wait, first_heartbeat=first_heartbeat) as driver:
        return verifying.verify(image, guest, driver=driver, **boot)


def verify_built(image: Path, man: dict):
    """What `build --verify` runs: Trove drives the guest where it can,
    otherwise the boot checks alone, with the reason."""
    from factory import verify as verifying

    guest = verifying.guest_from_manifest(man)
    why = agent_of(man)[2]
    if why:
        _log.warning(f"boot checks only: Trove cannot drive {why}")
        return verifying.verify(image, guest)
    return verify_with_trove(image, guest, man)
