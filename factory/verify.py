"""`factory verify`: boot an image the way Nova boots a Trove guest, and check it.

A ConfigDrive (label config-2) carries `/etc/trove/conf.d/guest_info.conf` as
a `files` entry of `openstack/latest/meta_data.json`, as Nova writes it for
Trove's TaskManager, plus `network_data.json` (without it the guest's NIC stays
down) and user data whose only job is to print check lines to the serial
console. The image boots under qemu from a throw-away overlay (the artifact is
never written), with KVM when it works and plain emulation otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from factory import log, owners
from factory.errors import FactoryError

_log = log.get("verify")
KVM_PROBE_SECONDS = 25
MARK = "FACTORY-VERIFY"
MAC = "fa:16:3e:00:00:01"

# Runs in the guest from cloud-init's final stage; each check prints one line.
# /etc/trove/datastore (written by the datastore element) holds a line per
# datastore: its name, the unit that must be active, and in container mode
# the preloaded image.
PROBE = f"""#!/bin/sh
say() {{ echo "{MARK} $*" > /dev/ttyS0; }}
conf=/etc/trove/conf.d/guest_info.conf
if [ -f "$conf" ]; then say "guest_info sha256 $(sha256sum "$conf" | cut -d' ' -f1)"; else say "guest_info missing"; fi
unit=trove-guest.service
log=@LOGDIR@/trove-guestagent.log
set -- $(head -n 1 /etc/trove/datastore 2>/dev/null)
name=${{1:-unknown}}; store=${{2:-none}}
for i in $(seq 1 90); do
    d=$(systemctl is-active "$store" 2>/dev/null)
    # A masked or disabled unit that is not running will not start by itself:
    # waiting the full three minutes for it only delays the report.
    case "$(systemctl is-enabled "$store" 2>/dev/null)" in
        masked*|disabled) [ "$d" != active ] && [ "$d" != activating ] && break ;;
    esac
    if [ -f "$conf" ]; then
        grep -q "guest_id" "$log" 2>/dev/null && [ "$d" = active ] && break
    else
        [ "$d" = active ] && break
    fi
    sleep 2
done
say "nic $(ip -4 -o addr show scope global 2>/dev/null | awk '{{print $2, $4}}' | head -n 1)"
say "localhost $(getent hosts localhost | head -n 1)"
pid=$(systemctl show -p MainPID --value "$unit")
say "agent $unit $(systemctl is-active "$unit") restarts=$(systemctl show -p NRestarts --value "$unit") user=$(ps -o user= -p "${{pid:-0}}" 2>/dev/null)"
say "agent-read $(grep -o -m1 'guest_id *= *[0-9a-f-]*' "$log" 2>/dev/null)"
say "agent-log $(grep -v DEBUG "$log" 2>/dev/null | tail -n 2 | cut -c1-160 | tr '\\n' '|')"
say "datastore $name $store $(systemctl is-active "$store" 2>/dev/null)"
images=$(awk 'NF == 3 {{ print $3 }}' /etc/trove/datastore 2>/dev/null)
if [ -z "$images" ]; then
    # The database itself must answer, not only a wrapper unit be active.
    case $name in
        postgresql) q=$(cd / && runuser -u postgres -- psql -tAc 'select 40+2' 2>&1) ;;
        mysql|mariadb|percona) q=$(mysql -N -e 'select 40+2' 2>&1) ;;
        redis) q=$(redis-cli eval 'return 40+2' 0 2>&1) ;;
        *) q="no query known for $name" ;;
    esac
    say "dbquery $name $(echo "$q" | tail -n 1 | cut -c1-150)"
fi
for image in $images; do
    say "image $image $(docker image inspect --format '{{{{.Id}}}}' "$image" 2>/dev/null | cut -c1-19 || true)"
    if err=$(docker run --rm --network none --entrypoint true "$image" 2>&1); then r=ok; else r="failed: $(echo "$err" | tail -n 1 | cut -c1-150)"; fi
    say "image-run $image $r"
done
if [ -n "$images" ]; then
    # When a first-boot preload finished (0: none ran), in seconds since boot.
    t=$(systemctl show -p ExecMainExitTimestampMonotonic --value trove-preload-images.service 2>/dev/null)
    say "image-timing preloaded_at=$(awk -v t="${{t:-0}}" 'BEGIN {{ printf "%.1f", t / 1e6 }}')s probe_at=$(cut -d' ' -f1 /proc/uptime)s"
fi
say "datasource $(grep -ho '"datasource": "[^"]*"' /run/cloud-init/status.json /run/cloud-init/result.json 2>/dev/null | head -1)"
say "done"
# While Trove drives the guest, its agent's log (but debug lines) goes to the
# console, so that a failed call is shown with the agent's own words. A unit
# of its own, as cloud-init waits for what its scripts leave running.
[ "@FOLLOW@" = yes ] && systemd-run --quiet --unit=factory-verify-agent-log sh -c \
    "tail -n 0 -F '$log' | grep --line-buffered -v DEBUG | sed -u 's/^/{MARK} agent-log: /' > /dev/ttyS0"
exit 0
"""


@dataclass
class Check:
    name: str
    passed: bool
    evidence: str


@dataclass
class Report:
    image: Path
    accel: str
    seconds: float
    console: Path
    checks: list[Check] = field(default_factory=list)
    calls: Path | None = None  # the JSON report of the calls a driver made

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def guest_info(datastore: str, version: str | None) -> str:
    """A guest_info.conf as Trove's TaskManager writes it (values are examples)."""
    return (
        "[DEFAULT]\n"
        f"guest_id={uuid.uuid5(uuid.NAMESPACE_DNS, 'factory-verify')}\n"
        f"datastore_manager={datastore}\n"
        f"datastore_version={version or 'default'}\n"
        "tenant_id=factory-verify\n"
        "instance_rpc_encr_key=factory-verify-not-a-secret\n"
    )


# The agent's own config, which Trove's TaskManager injects beside
# guest_info.conf. Nothing listens at this transport: the agent starts, reads
# its config and keeps retrying the message queue, which is all a lone guest
# can show. debug makes it log its options, guest_id among them.
AGENT_CONF = (
    "[DEFAULT]\n"
    "debug = True\n"
    "transport_url = rabbit://factory-verify:unused@127.0.0.1:5672/\n"
    "control_exchange = trove\n"
)
VOLUME_SIZE = "1G"


GUEST_INFO_PATH = "/etc/trove/conf.d/guest_info.conf"
AGENT_CONF_PATH = "/etc/trove/conf.d/trove-guestagent.conf"


def probe(logdir: str, follow_agent_log: bool = False) -> str:
    return PROBE.replace("@LOGDIR@", logdir).replace("@FOLLOW@", "yes" if follow_agent_log else "no")


def config_drive(dest: Path, files: dict[str, str], user_data: str) -> Path:
    """An ISO9660 ConfigDrive, as Nova builds it: `files` become injected
    files of meta_data.json, as Trove's TaskManager asks Nova for them."""
    if not shutil.which("genisoimage"):
        raise FactoryError("genisoimage is missing; run ./factory.sh once (it installs it) or apt-get install genisoimage")
    root = dest.parent / "config-drive"
    latest = root / "openstack" / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    (root / "openstack" / "content").mkdir(exist_ok=True)
    meta = {
        "uuid": str(uuid.uuid4()),
        "name": "factory-verify",
        "hostname": "factory-verify",
        "launch_index": 0,
        "availability_zone": "nova",
        "files": [],
    }
    for i, (path, content) in enumerate(files.items()):
        (root / "openstack" / "content" / f"{i:04d}").write_text(content)
        meta["files"].append({"path": path, "content_path": f"/content/{i:04d}"})
    (latest / "meta_data.json").write_text(json.dumps(meta))
    (latest / "network_data.json").write_text(json.dumps({
        "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": MAC, "mtu": 1500}],
        "networks": [{"id": "net0", "type": "ipv4_dhcp", "link": "tap0", "network_id": "net0"}],
        "services": [],
    }))
    (latest / "user_data").write_text(user_data)
    (latest / "vendor_data.json").write_text("{}")
    subprocess.run(["genisoimage", "-quiet", "-o", str(dest), "-V", "config-2", "-r", "-J", str(root)], check=True)
    return dest


def _qemu_cmd(overlay: Path, drive: Path, volume: Path, console: Path, accel: str, memory: int,
              forwards: tuple[str, ...] = ()) -> list[str]:
    # restrict=on: the guest gets DHCP but reaches nothing outside, except
    # through the forwards given (the message queue, the datastore's port).
    netdev = ",".join(["user,id=n0,restrict=on", *forwards])
    cmd = ["qemu-system-x86_64", "-nographic", "-no-reboot", "-m", str(memory), "-smp", "2",
           "-drive", f"file={overlay},if=virtio,format=qcow2",
           # The instance's data volume (/dev/vdb), as Trove attaches one: the
           # agent formats and mounts it when it starts.
           "-drive", f"file={volume},if=virtio,format=qcow2",
           "-drive", f"file={drive},media=cdrom,readonly=on",
           "-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
           "-serial", f"file:{console}", "-monitor", "none", "-display", "none"]
    if accel == "kvm":
        cmd += ["-accel", "kvm", "-cpu", "host"]
    else:
        cmd += ["-accel", "tcg"]
    return cmd


def _kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills qemu when the factory dies,
    even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


@contextmanager
def _qemu(cmd: list[str]) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_die_with_parent)
    record = owners.record(owners.PROCESS, proc.pid, thing_pid=proc.pid)
    try:
        yield proc
    finally:
        owners.forget(record)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(proc: subprocess.Popen, console: Path, deadline: float, first_output_within: float | None) -> str:
    """Wait until the probe says done or the deadline passes. Returns "done",
    "exited", "timeout", or "silent" when probing KVM and the guest printed no
    kernel line in time (or qemu gave up at once)."""
    started = time.monotonic()
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace")
        if f"{MARK} done" in text:
            return "done"
        if proc.poll() is not None:
            if first_output_within and "Linux version" not in text:
                return "silent"
            return "exited"
        if first_output_within and time.monotonic() - started > first_output_within and "Linux version" not in text:
            return "silent"
        time.sleep(1)
    return "timeout"


def _line(text: str, pattern: str) -> str | None:
    for line in text.splitlines():
        if re.search(pattern, line):
            return line.strip()[:200]
    return None


@dataclass(frozen=True)
class Guest:
    """What the image was built with, that the checks compare against."""

    datastore: str
    version: str | None = None
    user: str = "trove"
    logdir: str = "/var/log/trove"


def evaluate(console_text: str, expected_guest_info: str, guest: Guest) -> list[Check]:
    import hashlib

    def check(name: str, pattern: str, ok, missing: str = "the probe never reported") -> None:
        line = _line(console_text, pattern)
        checks.append(Check(name, bool(line and ok(line)), line or missing))

    checks: list[Check] = []
    check("booted", r"login:|Reached target.*Multi-User|Cloud-init v\. .* finished", lambda l: True,
          "no login prompt or cloud-init final message on the console")
    check("cloud-init used the ConfigDrive", rf"{MARK} datasource .*ConfigDrive|Datasource DataSourceConfigDrive",
          lambda l: True, "no ConfigDrive datasource line on the console")
    want = hashlib.sha256(expected_guest_info.encode()).hexdigest()
    check("guest_info.conf present with the injected content", rf"{MARK} guest_info", lambda l: want in l)
    check("guest agent service started", rf"{MARK} agent ", lambda l: " active" in l and "inactive" not in l)
    check(f"guest agent runs as {guest.user}", rf"{MARK} agent ", lambda l: l.endswith(f"user={guest.user}"))
    guest_id = re.search(r"guest_id=(\S+)", expected_guest_info).group(1)
    check("guest agent read guest_info.conf (its log names the guest_id)", rf"{MARK} agent-read", lambda l: guest_id in l)
    check("NIC has an address from DHCP", rf"{MARK} nic ", lambda l: re.search(r"\d+\.\d+\.\d+\.\d+/", l))
    check("localhost resolves", rf"{MARK} localhost ", lambda l: "127.0.0.1" in l or "::1" in l)
    check("datastore service active", rf"{MARK} datastore ", lambda l: l.endswith(" active"))
    if _line(console_text, rf"{MARK} dbquery "):
        check("database answers select 40+2 in the guest", rf"{MARK} dbquery ", lambda l: l.endswith(" 42"))
    for image in dict.fromkeys(re.findall(rf"{MARK} image (\S+)", console_text)):
        at = re.escape(image)
        check(f"preloaded datastore image in the guest's engine: {image}", rf"{MARK} image {at} ", lambda l: "sha256:" in l)
        check(f"preloaded datastore image starts: {image}", rf"{MARK} image-run {at} ", lambda l: l.endswith(" ok"))
    return checks


class Driver(Protocol):
    """Something that drives the booted guest (factory/conformance.py: Trove)."""

    forwards: tuple[str, ...]
    report_path: Path

    def delivery(self, guest_info_text: str, guest: Guest) -> tuple[dict[str, str], str]:
        """The ConfigDrive's injected files and the user data."""

    def drive(self, console: Path) -> list[Check]:
        """Called once the probe is done, while the guest still runs."""


def verify(image: Path, guest: Guest, timeout: int = 600, memory: int = 1536,
           accel: str = "auto", console_path: Path | None = None, guest_info_file: bool = True,
           driver: Driver | None = None) -> Report:
    """Boot and check. guest_info_file=False boots with a ConfigDrive that carries
    no guest_info.conf (as when Nova discards injected files): the agent must
    then stay down, and the report shows it did. A driver then drives the
    running guest and adds its checks."""
    image = image.resolve()
    if not image.is_file():
        raise FactoryError(f"{image} not found; give the path of a built image (.qcow2)")
    if not shutil.which("qemu-system-x86_64"):
        raise FactoryError("qemu-system-x86_64 is missing; run ./factory.sh once (it installs qemu-system-x86)")
    console = console_path or image.with_name(image.name + ".console.log")
    started = time.monotonic()
    info = guest_info(guest.datastore, guest.version)
    if driver:
        files, user_data = driver.delivery(info, guest)
    else:
        files = {GUEST_INFO_PATH: info, AGENT_CONF_PATH: AGENT_CONF} if guest_info_file else {}
        user_data = probe(guest.logdir)
    driven: list[Check] = []
    with owners.temporary_folder("factory-verify-") as tmpdir:
        fmt = "qcow2" if image.suffix == ".qcow2" else "raw"
        overlay = tmpdir / "overlay.qcow2"
        drive = config_drive(tmpdir / "config-2.iso", files, user_data)
        volume = tmpdir / "volume.qcow2"
        chosen = "kvm" if accel == "auto" and _kvm_usable() else ("tcg" if accel == "auto" else accel)
        _log.info("booting", image=image.name, accel=chosen, timeout=timeout)
        for attempt in ("first", "fallback"):
            # A fresh overlay and volume each time: a guest leaves its marks.
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", fmt, str(overlay)], check=True)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(volume), VOLUME_SIZE], check=True)
            console.write_text("")
            probing_kvm = attempt == "first" and chosen == "kvm" and accel == "auto"
            with _qemu(_qemu_cmd(overlay, drive, volume, console, chosen, memory,
                                 driver.forwards if driver else ())) as proc:
                outcome = _wait(proc, console, time.monotonic() + timeout, KVM_PROBE_SECONDS if probing_kvm else None)
                if outcome == "done" and driver:
                    driven = driver.drive(console)
            if outcome != "silent":
                break
            _log.info("KVM is present but the guest printed nothing; falling back to emulation (TCG)")
            chosen = "tcg"
        if outcome == "timeout":
            _log.warning("time limit reached before the guest finished its checks", seconds=timeout)
    text = console.read_text(errors="replace")
    return Report(image=image, accel=chosen, seconds=time.monotonic() - started, console=console,
                  checks=evaluate(text, info, guest) + driven, calls=driver.report_path if driven else None)


def guest_from_manifest(man: dict) -> Guest:
    """The guest as Trove would know it. In container mode the datastore
    version is the preloaded image's tag: the agent runs `<image>:<version>`.
    The guest_info a booted instance gets names one datastore (Trove's own
    instance's): a guest preloaded with several datastores' images is checked
    as the first, the generic guest (no image) with the first datastore whose
    image the factory knows."""
    from factory.layers import load_container_images

    target = man["target"]
    env = dict(target.get("env") or {})
    datastore = (target.get("datastore") or next(iter(load_container_images()))).split(",")[0]
    version = target.get("datastore_version")
    images = man.get("datastore_images") or []
    if not version and images:
        version = images[0]["image"].rsplit(":", 1)[-1]
    return Guest(datastore=datastore, version=version,
                 user=env.get("GUEST_USERNAME", "trove"), logdir=env.get("GUEST_LOGDIR", "/var/log/trove"))


def print_report(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"verify {report.image.name}: {'PASS' if report.passed else 'FAIL'} "
                        f"({report.accel.upper()}, {report.seconds:.0f}s)", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("console line")
    for c in report.checks:
        table.add_row(c.name, "pass" if c.passed else "FAIL", c.evidence)
    console = Console()
    if not console.is_terminal:  # logs and CI: one line a check, never wrapped
        console = Console(width=220)
    console.print(table)
    console.print(f"console log: {report.console}")
    if report.calls:
        console.print(f"Trove's calls: {report.calls}")
