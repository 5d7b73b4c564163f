"""Default package mirrors, taken from the host's own apt configuration.

DIB's elements carry their own default mirrors. Where the host already uses a
mirror for the same distro (the usual case for a Debian build host behind a
local mirror or proxy), that mirror is the better default: the host has just
proven it answers. Users override everything with DIB_DISTRIBUTION_MIRROR and
DIB_DEBIAN_SECURITY_MIRROR, as with DIB.
"""

from __future__ import annotations

from pathlib import Path

APT_DIR = Path("/etc/apt")


def _apt_entries(apt_dir: Path) -> list[tuple[str, list[str]]]:
    """(uri, suites) for every enabled deb source of the host."""
    entries: list[tuple[str, list[str]]] = []
    legacy = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                rest = words[1:]
                if rest[0].startswith("["):  # options like [signed-by=...]
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if len(rest) >= 2:
                    entries.append((rest[0], [rest[1]]))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        if not path.is_file():
            continue
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
    return entries


def host_mirrors(distro: str, apt_dir: Path = APT_DIR) -> dict[str, str]:
    """DIB mirror variables for `distro` that the host's apt sources imply."""
    found: dict[str, str] = {}
    for uri, suites in _apt_entries(apt_dir):
        path = uri.rstrip("/").rsplit("/", 1)[-1]
        security = any(s.endswith("-security") or s.endswith("/updates") for s in suites)
        if path == distro and not security:
            found.setdefault("DIB_DISTRIBUTION_MIRROR", uri.rstrip("/"))
        if distro == "debian" and path == "debian-security":
            found.setdefault("DIB_DEBIAN_SECURITY_MIRROR", uri.rstrip("/"))
    return found
