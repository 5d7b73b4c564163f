"""disk-image-create's command line, as `factory dib` takes it: the option
table (what each option does here), and the parser (GNU getopt, as
disk-image-create's own `getopt` call, so options and elements may mix).

Pure: no engine, no files; `factory/dib.py` runs what this returns.
"""

from __future__ import annotations

import getopt
from dataclasses import dataclass, field

from factory.errors import UsageError
from factory.target_settings import FORMATS

HONOURED, AS_ENV, NOTED, REFUSED = "honoured", "as --env", "accepted, no meaning here", "refused"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    arg: str | None  # the value's name, None for a switch
    dib: str  # what disk-image-create does with it
    kind: str  # HONOURED, AS_ENV, NOTED, REFUSED
    here: str  # what `factory dib` does with it (the note, or the reason for refusing)
    variable: str | None = None  # AS_ENV: the variable DIB exports for it


# Every option of disk-image-create (its `getopt` call), in its own order.
_TMPFS = ("layers are built in containers; only the base layer's root tree (debootstrap) is made in a tmpfs, "
          "and only when the host has 6 GiB of memory available")

OPTIONS: tuple[Option, ...] = (
    Option(("-a",), "ARCH", "image architecture", HONOURED, "the target's arch (amd64, arm64)"),
    Option(("-o",), "NAME", "image file name", HONOURED, "NAME.qcow2 (NAME.<type> each -t) where DIB puts it, "
           "with NAME.<type>.sha256 and NAME.manifest.json beside"),
    Option(("-t",), "TYPES", "image types, comma separated", HONOURED, "formats qcow2, raw, tar, vmdk, vdi, vhdx; "
           "tgz, squashfs, vhd, docker, aci are refused (no writer for them in the assembly)"),
    Option(("-x",), None, "trace (set -x) in every hook", HONOURED, "DIB_DEBUG_TRACE=1 in every phase log; "
           "no layer key changes (tracing does not change what is built)"),
    Option(("-u",), None, "do not compress the qcow2", HONOURED, "--compression none"),
    Option(("-c",), None, "clear the environment, then re-exec", HONOURED, "no exported variable is read "
           "(ELEMENTS_PATH aside); only the command line counts"),
    Option(("-n",), None, "do not add the base element", REFUSED, "every layer stack is built on DIB's base "
           "element (the base layer's element list); -n cannot be honoured"),
    Option(("-p",), "PKGS", "extra packages after install.d", HONOURED, "--package: installed in the top layer"),
    Option(("--checksum",), None, "write NAME.<type>.md5 and .sha256", HONOURED, ".sha256 is always written; "
           "--checksum adds .md5"),
    Option(("--image-size",), "GB", "image size", HONOURED, "--image-size"),
    Option(("--image-extra-size",), "GB", "extra size over the tree", REFUSED, "the assembly sizes the disk from "
           "the tree or from --image-size; pass --image-size instead"),
    Option(("--image-cache",), "DIR", "download cache folder", NOTED, "downloads go to the factory's own cache "
           "(<state>/dib-cache), shared by every build on this host"),
    Option(("--max-online-resize",), "BLOCKS", "mkfs -E resize=", REFUSED, "the assembly's mkfs options are its "
           "own; the root filesystem grows at first boot (cloud-init growpart)"),
    Option(("--mkfs-journal-size",), "MB", "ext4 journal size", AS_ENV, "DIB_JOURNAL_SIZE, read by the assembly",
           "DIB_JOURNAL_SIZE"),
    Option(("--mkfs-options",), "OPTS", "extra mkfs options", REFUSED, "the assembly's mkfs options are its own "
           "(inode ratio, journal)"),
    Option(("--min-tmpfs",), "GB", "tmpfs size needed", NOTED, _TMPFS),
    Option(("--no-tmpfs",), None, "do not build in tmpfs", NOTED, _TMPFS),
    Option(("--offline",), None, "do not update cached resources", NOTED, "cached layers are never refreshed "
           "unless asked (factory build --refresh); a missing layer is built as usual"),
    Option(("--qemu-img-options",), "OPTS", "qemu-img -o options", HONOURED, "qemu-img convert -o OPTS"),
    Option(("--root-label",), "LABEL", "root filesystem label", REFUSED, "the assembly labels the root filesystem "
           "as DIB's block-device config does (cloudimg-rootfs); set DIB_BLOCK_DEVICE_CONFIG for another"),
    Option(("--ramdisk-element",), "ELEMENT", "ramdisk-image-create's main element", NOTED, "disk-image-create "
           "does not use it either (ramdisk-image-create does)"),
    Option(("--install-type",), "TYPE", "DIB_DEFAULT_INSTALLTYPE", AS_ENV, "DIB_DEFAULT_INSTALLTYPE for every layer",
           "DIB_DEFAULT_INSTALLTYPE"),
    Option(("--docker-target",), "REPO:TAG", "tag for -t docker", REFUSED, "the docker output type is not written"),
    Option(("--logfile",), "FILE", "run output to FILE", REFUSED, "each layer's phase output is in its log "
           "(<state>/logs, named in the output); redirect stderr for the rest"),
    Option(("-h", "--help"), None, "usage, exit 0", HONOURED, "this table, exit 0"),
    Option(("--version",), None, "DIB's version, exit 0", HONOURED, "DIB's version (the one the layers are built with), exit 0"),
)
BY_FLAG = {flag: o for o in OPTIONS for flag in o.flags}
_REFUSED_TYPES = {"tgz", "squashfs", "vhd", "docker", "aci"}


@dataclass
class DibRun:
    """One disk-image-create command line, read."""

    elements: list[str]
    arch: str | None = None
    name: str = "image"
    formats: tuple[str, ...] = ("qcow2",)
    trace: bool = False
    compression: str | None = None
    clear_env: bool = False
    packages: list[str] = field(default_factory=list)
    checksum: bool = False
    image_size: str | None = None
    qemu_img_options: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    show: str | None = None  # "help" or "version": print it, build nothing


def _getopt_spec() -> tuple[str, list[str]]:
    short = "".join(f[1] + (":" if o.arg else "") for o in OPTIONS for f in o.flags if not f.startswith("--"))
    long = [f[2:] + ("=" if o.arg else "") for o in OPTIONS for f in o.flags if f.startswith("--")]
    return short, long


def parse(argv: list[str]) -> DibRun:
    """disk-image-create's arguments -> a DibRun; a refused option or a bad
    value is a UsageError naming it and why."""
    short, long = _getopt_spec()
    try:
        given, elements = getopt.gnu_getopt(argv, short, long)
    except getopt.GetoptError as e:
        raise UsageError(f"{e}; see `factory dib -h`") from e
    run = DibRun(elements=elements)
    problems: list[str] = []
    for flag, value in given:
        option = BY_FLAG[flag]
        if option.kind == REFUSED:
            problems.append(f"{flag}: not supported: {option.here}")
        elif option.kind == NOTED:
            run.notes.append(f"{flag}: {option.here}")
        elif option.kind == AS_ENV:
            run.env[option.variable] = value
        else:
            _apply(run, flag, value, problems)
    if not run.show and not run.elements:
        problems.append("at least one distribution root element must be specified (e.g. ubuntu), as for disk-image-create")
    if problems:
        raise UsageError("\n".join(problems))
    return run


def _apply(run: DibRun, flag: str, value: str, problems: list[str]) -> None:
    if flag == "-a":
        run.arch = value
    elif flag == "-o":
        run.name = value
    elif flag == "-t":
        types = tuple(t for t in value.split(",") if t)
        refused = sorted(set(types) & _REFUSED_TYPES)
        unknown = sorted(set(types) - _REFUSED_TYPES - set(FORMATS))
        if refused:
            problems.append(f"-t {','.join(refused)}: not supported: no writer for them; use {', '.join(FORMATS)}")
        if unknown:
            problems.append(f"-t {','.join(unknown)}: unknown image type; use {', '.join(FORMATS)}")
        run.formats = types
    elif flag == "-x":
        run.trace = True
    elif flag == "-u":
        run.compression = "none"
    elif flag == "-c":
        run.clear_env = True
    elif flag == "-p":
        run.packages += [p for p in value.split(",") if p]
    elif flag == "--checksum":
        run.checksum = True
    elif flag == "--image-size":
        run.image_size = value
    elif flag == "--qemu-img-options":
        run.qemu_img_options = value
    elif flag in ("-h", "--help"):
        run.show = "help"
    elif flag == "--version":
        run.show = "version"


def output_stem(run: DibRun) -> str:
    """As disk-image-create: with one image type, a NAME ending in .TYPE loses it."""
    if len(run.formats) == 1 and run.name.endswith(f".{run.formats[0]}"):
        return run.name[: -len(run.formats[0]) - 1]
    return run.name


def usage() -> str:
    lines = ["Usage: factory dib [OPTION]... [ELEMENT]...   (disk-image-create's command line, built as cached layers)",
             "", "Options (what disk-image-create does -> what factory dib does):"]
    for o in OPTIONS:
        flags = "|".join(o.flags) + (f" {o.arg}" if o.arg else "")
        lines.append(f"    {flags:<28} {o.dib} -> {o.kind}: {o.here}")
    lines += ["", "    --plan                       print the layer cut and the plan; build nothing (factory's own)",
              "", "Environment: as disk-image-create, DIB_* and the elements' variables (GUEST_USERNAME, ...);",
              "ELEMENTS_PATH adds element folders; FACTORY_AGENT_SOURCE picks the guest agent (pypi:13.0.1, ...).",
              "At least one distribution root element must be specified."]
    return "\n".join(lines)
