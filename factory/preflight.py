"""Checks that fail a build in seconds instead of minutes into the base layer.

The package mirror the base layer bootstraps from must answer. Where it does
not (no route, no name), the build stops at once and says which setting
points it at a mirror that does.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from factory.target import Target
from factory.elements import search_path
from factory.errors import Unavailable
from factory.layers import load_meta

_URL = re.compile(r"^\s*(?:baseurl|metalink|mirrorlist)\s*=\s*(\S+)", re.M)


def mirror_urls(target: Target) -> tuple[list[str], str]:
    """(URLs the base layer's bootstrap fetches from, the setting that changes them)."""
    meta = load_meta().get(target.distro, {})
    env = target.env_dict()
    setting = meta.get("mirror_setting", "DIB_DISTRIBUTION_MIRROR")
    if meta.get("bootstrap_repos"):
        folder = env.get(setting)
        if folder:
            repo_dirs = [Path(folder)]
        else:
            repo_dirs = [d / meta["bootstrap_repos"] for d in search_path() if (d / meta["bootstrap_repos"]).is_dir()][:1]
        urls = [m for d in repo_dirs for f in sorted(d.glob("*.repo")) for m in _URL.findall(f.read_text())]
        return urls, setting
    mirror = env.get("DIB_DISTRIBUTION_MIRROR")
    return ([mirror] if mirror else []), "DIB_DISTRIBUTION_MIRROR"


def check_mirror(target: Target, timeout: float = 8.0) -> None:
    urls, setting = mirror_urls(target)
    for url in urls:
        parsed = urlparse(url.replace("$releasever", "0").replace("$basearch", "x86_64"))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            continue
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        except OSError as e:
            reason = e.strerror or e.__class__.__name__
            raise Unavailable(
                f"the {target.distro} package mirror {parsed.hostname} cannot be reached from this host ({reason}); "
                f"point {setting} at a mirror that can (--env {setting}=...)"
            ) from e
