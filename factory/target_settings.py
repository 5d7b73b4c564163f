"""The target settings, one declaration each.

A `Setting` names everything about one target setting: its field on the
target, its type and default, its command-line flag, the keys factory.yaml
accepts for it, an optional environment variable, its help, how given values
are read and how a value is checked. The CLI options (`cli_target.py`), the
`Target` and `Flags` types (`target.py`), the factory.yaml reader
(`config.py`) and validation (`validate.py`) are all derived from `SETTINGS`:
adding a target setting is adding one entry here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from factory import agent
from factory.errors import FactoryError

ARCHES = ("amd64", "arm64")
FORMATS = ("qcow2", "raw", "tar", "vmdk", "vdi", "vhdx")
COMPRESSIONS = ("none", "zlib", "zstd")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$", re.I)


@dataclass(frozen=True)
class Setting:
    name: str  # the Target field
    flags: tuple[str, ...]  # the command-line flag and its short forms
    help: str
    default: object = None
    many: bool = False  # repeatable: the field holds what `read` makes of the values (a tuple, or one joined string)
    yaml: tuple[str, ...] = ()  # factory.yaml keys besides the name (and its hyphen form)
    env: str | None = None  # the variable that sets it: in the process environment (below flags and --env, above the file) or as --env
    read: Callable[[list[str]], tuple[str, ...] | str] | None = None  # given values -> the field (many only)
    check: Callable[[object], str | None] | None = None  # a problem with a value, one line, or None

    @property
    def required(self) -> bool:
        return self.name == "distro"


def split_formats(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part and part not in out:
                out.append(part)
    return tuple(out)


def join_datastores(values: list[str] | tuple[str, ...] | str) -> str:
    """--datastore given once or more (or comma-separated, or a factory.yaml
    list) -> the Target's one string, comma-separated; "" for none (the
    generic guest image of container mode)."""
    items = [values] if isinstance(values, str) else values
    out: list[str] = []
    for value in items:
        for part in ("" if value is None else str(value)).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return ",".join(out)


def split_packages(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for v in values for p in str(v).split(",") if p)


def parse_env(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise FactoryError(f"--env '{item}' is not KEY=VALUE; write it as e.g. --env GUEST_USERNAME=trove")
        key, value = item.split("=", 1)
        if not ENV_NAME.match(key):
            raise FactoryError(f"--env name '{key}' is not a valid variable name (letters, digits, _)")
        env[key] = value
    return env


def size_in_gib(text: str | None) -> str | None:
    """--image-size as DIB's DIB_IMAGE_SIZE (GiB, may be fractional); None
    when not given or not a size (validation says which)."""
    m = _SIZE.fullmatch((text or "").strip())
    if not m:
        return None
    value, unit = float(m.group(1)), (m.group(2) or "G").upper()
    return f"{value * {'K': 1 / 2**20, 'M': 1 / 1024, 'G': 1, 'T': 1024}[unit]:g}"


# No guest tree (an OS, the agent, a datastore) fits in less.
MIN_IMAGE_GIB = 1.0


def size_floor_gib(tree_bytes: int) -> float:
    """The smallest disk a tree fits on: the assembler's rule (ext4 spends
    about 8% on inodes and metadata, plus a 64 MiB journal and 64 MiB slack)."""
    return max(MIN_IMAGE_GIB, (tree_bytes * 1.08 + (128 << 20)) / 2**30)


def _check_size(value) -> str | None:
    if not value:
        return None
    gib = size_in_gib(value)
    if gib is None:
        return f"--image-size '{value}' is not a size; use e.g. 3G or 2.5 (GiB, as DIB)"
    if float(gib) < MIN_IMAGE_GIB:
        return (f"--image-size '{value}' is below the {MIN_IMAGE_GIB:g}G floor no guest image fits under; "
                "use e.g. 3G, or leave it out to size the disk from the tree")
    return None


def _check_arch(value) -> str | None:
    return None if value in ARCHES else f"unknown arch '{value}'; valid: {', '.join(ARCHES)}"


def _check_formats(value) -> str | None:
    bad = [f for f in value if f not in FORMATS]
    if bad:
        return f"unknown format(s) {', '.join(bad)}; valid: {', '.join(FORMATS)}"
    return None if value else "no output format; pass e.g. --format qcow2"


def _check_agent(value) -> str | None:
    try:
        agent.parse(value)
    except FactoryError as e:
        return str(e)
    return None


# --datastore-image: where container mode's datastore image comes from.
DISTRO_IMAGE = "distro"
ARCHIVE_PREFIX = "archive:"
# A container image reference as the engine takes it: [HOST[:PORT]/]NAME[:TAG][@DIGEST],
# NAME lowercase path components.
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(rf"{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
                        r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")


def parse_image_source(text: str | None) -> tuple[str, str]:
    """--datastore-image -> (kind, value): ("registry", REF), ("archive",
    FILE), ("distro", ""); kind "" when not given."""
    text = (text or "").strip()
    if not text:
        return "", ""
    if text == DISTRO_IMAGE:
        return DISTRO_IMAGE, ""
    if text.startswith(ARCHIVE_PREFIX):
        path = text[len(ARCHIVE_PREFIX):]
        if not path:
            raise FactoryError("--datastore-image archive: names no file; write archive:FILE.tar (a docker save archive)")
        return "archive", path
    if not _REFERENCE.fullmatch(text):
        raise FactoryError(f"--datastore-image '{text}' is not an image reference; use NAME:TAG, archive:FILE or distro")
    return "registry", text


def _check_image_source(value) -> str | None:
    try:
        parse_image_source(value)
    except FactoryError as e:
        return str(e)
    return None


def _check_mode(value) -> str | None:
    if value and value not in agent.MODES:
        return f"--datastore-mode '{value}' is not known; use {' or '.join(agent.MODES)}"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting("distro", ("--distro",), "debian, ubuntu, fedora (see `factory elements`)"),
    # One datastore; in container mode also none (the generic guest image of
    # upstream's single-image layout) or several (repeated or comma-separated,
    # one string on the target), each preloading its image.
    Setting("datastore", ("--datastore",), "e.g. postgresql, mariadb, redis. Container mode: repeat it to preload "
            "several images into one guest, or leave it out for the generic guest image.", default="", many=True,
            env="SERVICE_TYPE", read=join_datastores),
    Setting("release", ("--release",), "Distro release; default per distro.", env="DIB_RELEASE"),
    Setting("arch", ("--arch",), "amd64 (default) or arm64.", default="amd64", env="ARCH", check=_check_arch),
    Setting("datastore_version", ("--datastore-version",), "Where the distro offers several.", yaml=("version",)),
    Setting("agent_source", ("--agent-source",), "Guest agent: pypi[:VERSION] (default: a current trove release), "
            "path:DIR, git:URL[@REF], runtime (development only).", env="FACTORY_AGENT_SOURCE",
            check=_check_agent),
    Setting("datastore_mode", ("--datastore-mode",), "native (packages in the image) or container (image preloaded "
            "for the agent to run); default follows the agent release.", check=_check_mode),
    Setting("datastore_image", ("--datastore-image",), "Container mode: the datastore image to preload: NAME:TAG "
            "(pulled), archive:FILE (docker save), or distro (built from the distro archive). Default: the upstream "
            "image when a registry answers, else distro.", check=_check_image_source),
    Setting("elements", ("--element",), "Extra DIB element (repeatable); LAYER:NAME puts it in that layer instead of base.", default=(), many=True, yaml=("element",),
            read=lambda v: tuple(str(i) for i in v)),
    Setting("packages", ("--package", "-p"), "Extra package to install (repeatable), like DIB's -p.", default=(),
            many=True, yaml=("package",), read=split_packages),
    # Seed settings and --env, sorted; factory.yaml gives them as a mapping.
    Setting("env", ("--env",), "KEY=VALUE for the elements (repeatable).", default=(), many=True),
    Setting("image_size", ("--image-size",), "Disk size, e.g. 3G; default: from the tree, as DIB.", env="DIB_IMAGE_SIZE",
            check=_check_size),
    Setting("formats", ("--format", "-t"), "qcow2 (default), raw, tar, ... (repeatable or comma-separated).",
            default=("qcow2",), many=True, yaml=("format",), read=split_formats, check=_check_formats),
    Setting("output", ("--output", "-o"), "Directory for artifacts (default ./out).", default="out"),
)
BY_NAME = {s.name: s for s in SETTINGS}
# The environment variable -> the setting it sets (DIB_RELEASE -> release, ...).
BY_ENV = {s.env: s for s in SETTINGS if s.env}
