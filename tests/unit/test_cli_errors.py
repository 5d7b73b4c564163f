"""One error path for every command: a kind of failure, one exit code, one line."""

from __future__ import annotations

import errno

import pytest
import typer
from typer.testing import CliRunner

from factory import cli
from factory.cli_errors import one_error_path
from factory.errors import BuildFailed, FactoryError, PublishFailed, Unavailable, UsageError, VerifyFailed


@pytest.mark.parametrize("raised, code", [
    (UsageError("bad value; pass a good one"), 2),
    (FactoryError("bad value; pass a good one"), 2),
    (BuildFailed("base: install.d failed (exit 1)"), 3),
    (VerifyFailed("x.qcow2 did not pass its checks"), 4),
    (PublishFailed("Glance's md5 is not the one sent"), 5),
    (Unavailable("no container engine answers"), 6),
    (OSError(errno.ENOSPC, "No space left on device", "/out/x"), 6),
    (KeyboardInterrupt(), 130),
])
def test_each_kind_of_failure_has_its_exit_code_and_one_line(raised, code):
    app = typer.Typer()

    @app.command()
    @one_error_path
    def fails() -> None:
        raise raised

    result = CliRunner().invoke(app, [])
    assert result.exit_code == code
    assert len([l for l in result.output.splitlines() if l.startswith("error: ")]) == 1
    assert "Traceback" not in result.output


def test_every_command_goes_through_the_error_path():
    commands = [c.callback for group in (cli.app, cli.layers_app, cli.builder_app) for c in group.registered_commands]
    assert len(commands) >= 11
    assert all(getattr(c, "__wrapped__", None) for c in commands)
    assert all(c.__code__ is one_error_path(lambda: None).__code__ for c in commands)


def test_an_unknown_factory_progress_stops_every_command_at_once():
    result = CliRunner().invoke(cli.app, ["layers", "ls"], env={"FACTORY_PROGRESS": "fancy"})
    assert result.exit_code == 2
    assert "error: FACTORY_PROGRESS 'fancy' is not known; use auto, plain, tty, json" in result.output
