"""Archive keyrings a build host may lack (an Ubuntu key on a Debian host).

Fetched from the distro's own archive, pinned by the package's sha256 (in
layers/_distros.yaml), and kept in the state folder. The key's identity is the
pinned checksum, so planning needs no download; building fetches it once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from factory import log
from factory.elements import search_path
from factory.errors import FactoryError
from factory.layers import load_meta
from factory.settings import state_dir

_log = log.get("keyrings")


def spec(distro: str) -> dict | None:
    return load_meta().get(distro, {}).get("apt_keyring")


def keyring_path(distro: str) -> Path | None:
    s = spec(distro)
    if not s:
        return None
    return state_dir() / "keyrings" / s["sha256"][:16] / Path(s["member"]).name


def dib_default_mirror(element: str, arch: str) -> str:
    """DIB_DISTRIBUTION_MIRROR as the element's own environment.d sets it."""
    for d in search_path():
        env_dir = d / element / "environment.d"
        if env_dir.is_dir():
            script = "".join(f'source "{f}"\n' for f in sorted(env_dir.iterdir()) if f.is_file())
            out = subprocess.run(["bash", "-c", script + 'echo "$DIB_DISTRIBUTION_MIRROR"'],
                                 capture_output=True, text=True, env={"PATH": os.environ.get("PATH", ""), "ARCH": arch})
            return out.stdout.strip()
    return ""


def ensure_keyring(distro: str, mirror: str | None, arch: str) -> Path | None:
    s = spec(distro)
    dest = keyring_path(distro)
    if not s or dest is None or dest.exists():
        return dest
    base = mirror or dib_default_mirror(s["mirror_element"], arch)
    if not base:
        raise FactoryError(f"no {distro} mirror known to fetch its archive keyring from; set DIB_DISTRIBUTION_MIRROR or DIB_APT_KEYRING")
    url = f"{base.rstrip('/')}/{s['deb']}"
    _log.info("fetching the archive keyring", distro=distro, url=url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        deb = Path(tmp) / "keyring.deb"
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(deb, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise FactoryError(f"cannot fetch {url} ({e}); set DIB_APT_KEYRING to a local {distro} archive keyring") from e
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        if digest != s["sha256"]:
            raise FactoryError(f"{url} has sha256 {digest}, not the pinned {s['sha256']}; refusing it")
        tree = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        out = subprocess.run(["tar", "-xO", s["member"]], input=tree, capture_output=True)
        if out.returncode != 0 or not out.stdout:
            raise FactoryError(f"{url} holds no {s['member']}")
        partial = dest.with_name(dest.name + ".part")
        partial.write_bytes(out.stdout)
        partial.rename(dest)
    return dest
