"""Release what dead factory processes left on this host: recorded folders
(and the loop devices backed by files in them), qemu processes, private
brokers, build containers. Only what belongs to a process that is gone is
touched; other people's running builds share this host and its engine.

Runs at the start of every command (`startup`) and as `factory gc`.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from factory import broker, log, owners
from factory.stored import LABEL

_log = log.get("gc")


def _release(rec: owners.Record) -> str:
    if rec.kind == owners.FOLDER:
        from factory.engine.assembly import release_loops

        path = Path(rec.what)
        if not path.is_dir():  # a partial file (an upload's), or gone already
            path.unlink(missing_ok=True)
            return f"file {path}"
        loops = release_loops(path)
        shutil.rmtree(path, ignore_errors=True)
        return f"folder {path}" + (f" (loop devices {', '.join(loops)})" if loops else "")
    if rec.kind == owners.PROCESS:
        pid = int(rec.what)
        if rec.foreign:  # it ran in its owner's container, and ended with it
            return f"process {pid} (gone with its container)"
        if owners.alive(pid, rec.thing_started):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return f"process {pid}"
        return f"process {pid} (already gone)"
    return f"unknown record {rec.path.name}"


def container_running(container_id: str) -> bool:
    """Whether a factory's own container (an owner in another PID namespace)
    still runs; when the engine cannot say, it is left alone."""
    import docker

    from factory.engine.docker import client

    try:
        return client().containers.get(container_id).status in ("created", "running", "restarting", "paused")
    except docker.errors.NotFound:
        return False
    except Exception:  # noqa: BLE001 - no engine: judge nothing
        return True


def release_orphans() -> list[str]:
    """Release what recorded owners that are gone left; one line each."""
    released = []
    for rec in owners.orphaned(container_running):
        released.append(_release(rec))
        owners.forget(rec.path)
    return released


def orphan_containers() -> list:
    """Build containers whose owner (label) is gone."""
    from factory.engine.docker import client

    out = []
    for c in client().containers.list(all=True, filters={"label": f"{LABEL}.building"}):
        label = lambda name: c.labels.get(f"{LABEL}.{name}", "")  # noqa: E731
        if not owners.owner_alive(label("pid"), label("pid-start"), label("pid-namespace"), label("owner-container"),
                                  container_running):
            out.append(c)
    return out


def remove_orphan_containers() -> list[str]:
    import docker

    removed = []
    for c in orphan_containers():
        try:
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            continue  # another process's sweep was first
        except docker.errors.APIError as e:
            if e.status_code == 409:  # another process's sweep is removing it now
                continue
            raise
        removed.append(f"container {c.short_id}")
        _log.info("released what a stopped run left", what=removed[-1])
    return removed


def collect(engine: bool = True) -> list[str]:
    """Everything dead owners left; the engine's containers too unless told not."""
    released = release_orphans()
    for line in released:
        _log.info("released what a stopped run left", what=line)
    broker.sweep()
    if engine:
        released += remove_orphan_containers()
    return released


def startup() -> None:
    """At the start of every command: the host's records and brokers (no
    engine call: a command that needs no engine must not wait for one;
    commands that use the engine sweep its containers when they start)."""
    collect(engine=False)
