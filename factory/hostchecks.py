"""Checks of paths on this host that a build will read or write, made
before anything is built. None of them opens a file: a FIFO or a device
given as an input must be refused, not read (reading a FIFO blocks forever)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

NAME_MAX = 255  # bytes in one path component (Linux filesystems)
PATH_MAX = 4095


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file or folder"


def input_problems(var: str, value: str, folder_must_hold_files: bool = False) -> list[str]:
    """A host input: a readable regular file, or a readable folder (with
    something in it when `folder_must_hold_files`)."""
    try:
        st = os.stat(value)
    except FileNotFoundError:
        return [f"{var} '{value}' does not exist on this host; point it at an existing file or folder"]
    except OSError as e:
        return [f"{var} '{value}' cannot be read ({e.strerror}); point it at a readable file or folder"]
    if stat.S_ISREG(st.st_mode):
        if not os.access(value, os.R_OK):
            return [f"{var} '{value}' is not readable by this user; fix its permissions (e.g. chmod a+r)"]
        return []
    if stat.S_ISDIR(st.st_mode):
        if not os.access(value, os.R_OK | os.X_OK):
            return [f"{var} '{value}' is a folder this user cannot read; fix its permissions (e.g. chmod a+rx)"]
        if folder_must_hold_files and not any(os.scandir(value)):
            return [f"{var} '{value}' is an empty folder; put the packages in it or point {var} at a package file"]
        return []
    return [f"{var} '{value}' is {_kind(st.st_mode)}; point it at a regular file or a folder"]


def output_problems(output: str) -> list[str]:
    """The output folder: names the filesystem takes, and a folder this user
    can make or write to."""
    path = Path(output).expanduser()
    raw = os.fsencode(str(path))
    if len(raw) > PATH_MAX:
        return [f"--output is {len(raw)} bytes long; the limit is {PATH_MAX}; pass a shorter path, e.g. --output out"]
    long_names = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if long_names:
        return [f"--output: the name '{long_names[0][:40]}...' is {len(os.fsencode(long_names[0]))} bytes; a file "
                f"name holds at most {NAME_MAX}; pass a shorter name, e.g. --output out"]
    probe = path.absolute()
    while not probe.exists() and not probe.is_symlink():
        probe = probe.parent
    if probe == path.absolute() or probe.is_dir():
        if not probe.is_dir():
            return [f"--output '{output}' is a file, not a folder; pass a folder, e.g. --output out"]
        if not os.access(probe, os.W_OK | os.X_OK):
            return [f"--output '{output}': this user cannot write in {probe}; pass a writable folder, e.g. --output out"]
        return []
    return [f"--output '{output}': {probe} is a file, so no folder can be made under it; pass a folder, e.g. --output out"]
