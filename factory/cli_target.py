"""The target settings as command-line options, derived from their
declarations: a command that takes `flags: Flags` gets one option per setting
(and --config) in its place."""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.target import Flags
from factory.target_settings import SETTINGS

_CONFIG = inspect.Parameter(
    "config", inspect.Parameter.KEYWORD_ONLY, default=None,
    annotation=Annotated[Optional[Path], typer.Option("--config", help="factory.yaml with defaults and a target matrix.")],
)


def _parameter(setting) -> inspect.Parameter:
    kind = list[str] if setting.many else Optional[str]
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=[] if setting.many else None,
                             annotation=Annotated[kind, typer.Option(*setting.flags, help=setting.help)])


def target_options(command):
    """Replace the command's `flags` parameter by the settings' options."""
    # The command's own options, their annotations evaluated (typer reads them
    # from the signature, and the module may hold them as strings).
    hints = typing.get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(command).parameters.values() if p.name != "flags"]
    settings = [_parameter(s) for s in SETTINGS] + [_CONFIG]
    names = {p.name for p in settings}

    @functools.wraps(command)
    def wrapper(**kw):
        given = {name: kw.pop(name) for name in list(kw) if name in names}
        return command(flags=Flags(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in given.items()}), **kw)

    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in settings + own]
    wrapper.__signature__ = inspect.Signature(parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
