"""Running commands in build containers, the part every engine user shares
(layers and the assembly): the container's PID 1, the rights root-level steps
get, bind mounts, and exec with its output logged and its tail kept."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import docker

from factory import owners
from factory.engine.docker import client
from factory.errors import BuildFailed
from factory.stored import LABEL

Bind = tuple[str, str, str]  # host path, path in the container, "ro" or "rw"

# PID 1 of build containers. Unlike `sleep infinity` it reaps orphaned
# processes (a package script that starts and stops a daemon, as mysql's does,
# waits for its pid to vanish) and exits at once on SIGTERM. It also reads its
# stdin, which this process holds open (`start`): when the factory dies, even
# by SIGKILL, the engine closes that stdin and PID 1 ends the container, so a
# killed build stops working at once instead of running on unowned.
KEEPALIVE = ["/bin/sh", "-c", "exec 3<&0; { while read -r _ <&3; do :; done; kill -TERM 1; } & "
             "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
# What root.d needs (debootstrap: mount proc/sys in the new tree, make device
# nodes, chroot) without the whole of --privileged, which some hosts refuse.
ELEVATED = {
    "cap_add": ["SYS_ADMIN", "MKNOD", "SYS_CHROOT", "SETFCAP", "DAC_READ_SEARCH"],
    "security_opt": ["apparmor=unconfined", "seccomp=unconfined"],
}


def run_labels(key: str) -> dict[str, str]:
    """Labels of a container while it builds: what for, and for whom (the
    orphan sweep removes those whose process is gone; the start time tells a
    reused PID from the owner; owners.py says why the namespace and container)."""
    me = owners.identity()
    return {f"{LABEL}.building": key, f"{LABEL}.pid": me["pid"], f"{LABEL}.pid-start": me["started"],
            f"{LABEL}.pid-namespace": me["namespace"], f"{LABEL}.owner-container": me["container"]}


def start(image: str, binds: list[Bind], labels: dict[str, str], **host_options):
    """Create and start a build container running KEEPALIVE, its stdin tied
    to this process. The SDK has no StdinOnce; without it the engine would
    keep the stdin open after this process's end, so the container config is
    completed here."""
    api = client().api
    host = api.create_host_config(mounts=mounts(binds), **host_options)
    config = api.create_container_config(image, KEEPALIVE, entrypoint=[], labels=labels, working_dir="/",
                                         stdin_open=True, host_config=host)
    config["StdinOnce"] = True
    container = client().containers.get(api.create_container_from_config(config)["Id"])
    try:
        container.tie = api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
        container.start()
    except BaseException:
        # Created but never running: nothing else would remove it until the
        # next run's sweep.
        remove(container)
        raise
    return container


def remove(container) -> None:
    """Remove a container `start` made (gone already is fine)."""
    tie = getattr(container, "tie", None)
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    finally:
        if tie is not None:
            tie.close()


def remove_later(container) -> threading.Thread:
    """Remove a container in the background. A committed layer's container
    still holds a copy of every file the layer wrote; deleting them takes
    about a second for a large layer, which the next layer need not wait
    for. Not a daemon thread: the process waits for it before it exits
    (Ctrl-C included); after a kill, the orphan sweep removes the container."""
    thread = threading.Thread(target=remove, args=(container,), name=f"remove-{container.short_id}")
    thread.start()
    return thread


def remove_own() -> list[str]:
    """Remove the build containers this process started and still runs (a
    matrix stopping the assemblies of other threads): each exec in them ends,
    and the thread that started it unwinds through its own cleanup."""
    me = owners.identity()
    removed = []
    for c in client().containers.list(all=True, filters={"label": [f"{LABEL}.building", f"{LABEL}.pid={me['pid']}"]}):
        if c.labels.get(f"{LABEL}.pid-start") == me["started"] and c.labels.get(f"{LABEL}.pid-namespace") == me["namespace"]:
            remove(c)
            removed.append(c.short_id)
    return removed


class PhaseFailed(BuildFailed):
    def __init__(self, message: str, tail: list[str], logfile: Path):
        super().__init__(message)
        self.tail = tail
        self.logfile = logfile


class Output:
    """Phase output: live with -v, always to the layer's log file, last lines
    kept for errors, each line handed to `on_line` (progress shows the last)."""

    def __init__(self, logfile: Path, verbose: bool, on_line: Callable[[str], None] | None = None):
        self.file = open(logfile, "a", encoding="utf-8", errors="replace")
        self.verbose = verbose
        self.on_line = on_line
        self.tail: list[str] = []
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        text = self._partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.file.write(line + "\n")
            self.tail = (self.tail + [line])[-25:]
            if self.on_line:
                self.on_line(line)
            if self.verbose:
                print(line, flush=True)

    def close(self) -> None:
        if self._partial:
            self.feed(b"\n")
        self.file.close()


def exec_in(container, cmd: list[str], env: dict[str, str], out: Output, what: str, logfile: Path) -> None:
    api = client().api
    exec_id = api.exec_create(container.id, cmd, environment=env, user="root", workdir="/")["Id"]
    for chunk in api.exec_start(exec_id, stream=True):
        out.feed(chunk)
    code = api.exec_inspect(exec_id)["ExitCode"]
    if code != 0:
        tail = "\n".join(out.tail[-15:])
        raise PhaseFailed(f"{what} failed (exit {code}); last lines:\n{tail}\nfull log: {logfile}", out.tail[-15:], logfile)


def mounts(binds: list[Bind]) -> list[docker.types.Mount]:
    """(host path, container path, "ro"|"rw") -> bind mounts, as structured
    mounts: a path may hold any character (a `:` included), and unlike the
    `volumes` shorthand they are not declared as image volumes, so a
    committed layer declares none."""
    return [docker.types.Mount(target=str(dst), source=str(src), type="bind", read_only=(mode == "ro"))
            for src, dst, mode in binds]
