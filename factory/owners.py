"""What each factory process holds on this host, recorded with its owner.

As DIB's block-device layer keeps a state file so that a later process can
undo what a killed one set up, a run writes a record before it takes
something a SIGKILL would leave behind: a work folder (and the loop devices
backed by files in it), a folder of partial artifacts, a qemu process. A
record is one small JSON file under state_dir()/owned naming the kind, the
thing, and the owner's PID with the owner's start time, so that a PID reused
by another process does not pass for the owner. `gc.py` releases what dead
owners left; containers carry the same owner in their labels instead.

A factory may run in a container (the factory image, as a CI step) and share
the state folder and engine with the host and with other such containers. A
PID means something only in its own PID namespace, so the owner also names
its namespace and, in a container, the container: an owner in another
namespace is judged by whether its container still runs, or, where that is
not known (a host process seen from a container), left alone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable, Iterator

from factory.settings import state_dir

FOLDER = "folder"  # a folder (or partial file) to delete; loop devices backed by its files are released first
PROCESS = "process"  # a process group to kill, if it is still the one recorded


@dataclass(frozen=True)
class Record:
    path: Path
    kind: str
    what: str
    pid: int
    started: str
    thing_started: str = ""  # PROCESS: the recorded process's own start time
    namespace: str = ""  # the owner's PID namespace ("" in records older than it: this one)
    container: str = ""  # the container the owner runs in, if any

    @property
    def foreign(self) -> bool:
        """Made in another PID namespace: its PIDs mean nothing here."""
        return bool(self.namespace) and self.namespace != pid_namespace()

    def owner_alive(self, running: Callable[[str], bool]) -> bool:
        return owner_alive(str(self.pid), self.started, self.namespace, self.container, running)


@cache
def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@cache
def own_container() -> str:
    """The id of the container this process runs in, or "" on a host: the
    engine bind-mounts a container's /etc/hostname from its own folder."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/etc/hostname":
            found = re.search(r"/containers/([0-9a-f]{64})/hostname$", fields[3])
            if found:
                return found.group(1)
    return ""


def identity() -> dict[str, str]:
    """This process as an owner: what records and container labels carry."""
    pid = os.getpid()
    return {"pid": str(pid), "started": start_time(pid) or "", "namespace": pid_namespace(), "container": own_container()}


def owner_alive(pid: str, started: str, namespace: str, container: str, running: Callable[[str], bool]) -> bool:
    """Whether an owner still runs. `running(container_id)` asks the engine,
    for an owner in another PID namespace."""
    if not namespace or namespace == pid_namespace():
        return pid.isdigit() and alive(int(pid), started)
    if container:
        return running(container)
    return True


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of
    /proc/PID/stat), or None when there is no such process or it has ended
    (a zombie, not yet reaped, runs nothing and holds nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(pid: int, started: str) -> bool:
    now = start_time(pid)
    return now is not None and (not started or now == started)


def root() -> Path:
    return state_dir() / "owned"


def record(kind: str, what: str | Path, thing_pid: int | None = None) -> Path:
    """Write the record (before the thing is taken: a kill in between leaves
    a record of nothing, which is harmless)."""
    folder = root()
    folder.mkdir(parents=True, exist_ok=True)
    me = identity()
    pid = int(me["pid"])
    body = {"kind": kind, "what": str(what), "pid": pid, "started": me["started"],
            "thing_started": (start_time(thing_pid) or "") if thing_pid else "",
            "namespace": me["namespace"], "container": me["container"]}
    path = folder / f"{kind}-{pid}-{secrets.token_hex(4)}.json"
    partial = folder / f".{path.name}.part"
    partial.write_text(json.dumps(body))
    partial.rename(path)
    return path


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)


@contextmanager
def held(kind: str, what: str | Path, thing_pid: int | None = None) -> Iterator[Path]:
    """Recorded while the block runs; the block releases the thing itself."""
    path = record(kind, what, thing_pid)
    try:
        yield path
    finally:
        forget(path)


def records() -> list[Record]:
    out = []
    folder = root()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            body = json.loads(path.read_text())
            out.append(Record(path, body["kind"], body["what"], int(body["pid"]), body["started"],
                              body.get("thing_started", ""), body.get("namespace", ""), body.get("container", "")))
        except (OSError, ValueError, KeyError):
            continue  # written atomically: only a foreign file reads wrong; leave it alone
    return out


def orphaned(running: Callable[[str], bool]) -> list[Record]:
    """Records whose owner is gone."""
    return [r for r in records() if not r.owner_alive(running)]


@contextmanager
def temporary_folder(prefix: str) -> Iterator[Path]:
    """A fresh folder under the system's temporary folder, recorded while it exists."""
    path = Path(tempfile.gettempdir()) / f"{prefix}{secrets.token_hex(4)}"
    with held(FOLDER, path):
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
