"""The CLI's one error path: every command's failure is one line on stderr
and an exit code that says what kind of failure it was (README's table)."""

from __future__ import annotations

import errno
import functools

import typer

from factory import progress
from factory.errors import FactoryError, Unavailable

INTERRUPTED = 130


def fail(message: str, code: int) -> None:
    for line in str(message).splitlines() or [""]:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def host_error(e: OSError) -> str:
    """A failure of this host (disk full, permissions) as one line."""
    where = f" ({e.filename})" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return f"no space left on this host's disk{where}; free space (e.g. `factory layers prune`, old artifacts) and run again"
    return f"{e.strerror or e}{where}"


def one_error_path(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            try:
                return command(*args, **kwargs)
            finally:  # a live progress display ends before the error lines
                progress.close()
        except FactoryError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            # Every `finally` below has run: containers, loop devices, qemu are gone.
            fail("interrupted; everything this run started was stopped and removed", INTERRUPTED)
        except OSError as e:
            fail(host_error(e), Unavailable.exit_code)

    return wrapper


# disk-image-create exits 1 on any failure (a bad option, a failed hook).
DIB_FAILURE = 1


def dib_exit_codes(command):
    """`factory dib` exits as disk-image-create does: 0, or 1 for any failure
    (the error line still says what kind); 130 when interrupted. Goes inside
    `one_error_path`, which prints the line."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FactoryError as e:
            e.exit_code = DIB_FAILURE
            raise
        except OSError as e:
            failure = FactoryError(host_error(e))
            failure.exit_code = DIB_FAILURE
            raise failure from e

    return wrapper
