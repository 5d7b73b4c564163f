"""Locks between factory processes on one host (flock on files in the state folder)."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from typing import Iterator

from factory import log
from factory.settings import state_dir

_log = log.get("locks")


@contextmanager
def host_lock(name: str, waiting: str, **context) -> Iterator[None]:
    """Held by one process at a time; another logs `waiting` and waits its turn."""
    locks = state_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.info(waiting, **context)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
