"""Trove's own code on the host, for the conformance run: a virtualenv with a
Trove release from the package index (its guest API client, its config
templates' renderer) and the datastores' client libraries, cached in the state
folder by version. The templates of the agent's own release are taken from
that release's wheel, unpacked beside it, since the config a guest receives
comes from the templates of the Trove that drives it.

One client release serves every agent: Trove caps the RPC version it sends
to what an older agent understands (`[upgrade_levels] guestagent`), which is
how an upgraded control plane drives older guests in a cloud too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from factory import log
from factory.errors import FactoryError, Unavailable
from factory.locks import host_lock
from factory.settings import state_dir

_log = log.get("trove-client")
# The Trove release whose client code drives the guest: the newest release,
# which runs on the host's Python and still speaks RPC 1.0 to 13.x agents.
CLIENT_VERSION = "26.0.0"
CLIENT_LIBRARIES = ["PyMySQL", "redis", "psycopg[binary]"]
DRIVER = Path(__file__).with_name("trove_driver.py")


def _root() -> Path:
    return state_dir() / "trove-client"


def _pip(python: Path, *args: str) -> None:
    p = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                       capture_output=True, text=True)
    if p.returncode != 0:
        tail = " | ".join(p.stderr.strip().splitlines()[-2:])
        raise Unavailable(f"could not install Trove's client from the package index ({tail}); "
                           "check that pip reaches it (PIP_INDEX_URL, proxy) and run again")


def python(version: str = CLIENT_VERSION) -> Path:
    """The venv's interpreter, installed on first use. A venv appears under
    its final name only when complete."""
    final = _root() / f"trove-{version}"
    interpreter = final / "bin" / "python"
    if interpreter.exists():
        return interpreter
    _root().mkdir(parents=True, exist_ok=True)
    with host_lock(f"trove-client-{version}", "waiting for another process installing Trove's client"):
        if interpreter.exists():
            return interpreter
        work = Path(tempfile.mkdtemp(prefix=f".trove-{version}-", dir=_root()))
        try:
            _log.info("installing Trove's client code (once per release)", trove=version)
            subprocess.run([sys.executable, "-m", "venv", str(work)], check=True)
            _pip(work / "bin" / "python", "install", f"trove=={version}", *CLIENT_LIBRARIES)
            os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return interpreter


def templates(agent_version: str) -> Path:
    """trove/templates of the agent's release, from its wheel."""
    final = _root() / f"templates-{agent_version}"
    if final.is_dir():
        return final
    _root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_root()) as tmp:
        _pip(python(), "download", "--no-deps", "--only-binary=:all:", "-d", tmp, f"trove=={agent_version}")
        wheel = next(Path(tmp).glob("*.whl"))
        unpacked = Path(tmp) / "templates"
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith("trove/templates/") and not name.endswith("/"):
                    dest = unpacked / name.removeprefix("trove/templates/")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(z.read(name))
        if not unpacked.is_dir():
            raise FactoryError(f"trove {agent_version}'s wheel carries no config templates")
        try:
            os.rename(unpacked, final)
        except OSError:
            if not final.is_dir():  # another process got there first otherwise
                raise
    return final
