"""Paths the container engine's host can bind-mount.

Build containers get the factory's files (elements, phase runners, the CA
bundle) as bind mounts, which the engine resolves on its host. When the
factory itself runs in a container (its Containerfile sets
FACTORY_IN_CONTAINER=1) those files exist only in that container, so they are
staged into the state folder, which such a run shares with the host at the
same path, under a name made of their content hash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from factory.hashing import content_hash
from factory.settings import state_dir


def in_container() -> bool:
    return os.environ.get("FACTORY_IN_CONTAINER") == "1"


def visible(path: Path) -> Path:
    path = Path(path)
    if not in_container():
        return path
    digest = content_hash(path).split(":", 1)[1][:16]
    dest = state_dir() / "staged" / digest / path.name
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".staging-"))
    if path.is_dir():
        shutil.copytree(path, tmp / path.name, symlinks=True)
    else:
        shutil.copy2(path, tmp / path.name)
    try:
        (tmp / path.name).rename(dest)
    except OSError:  # another run staged the same content first
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    return dest
