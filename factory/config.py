"""Targets from where settings come: flags over --env over the process
environment over factory.yaml (defaults, then each target or matrix entry)
over the declared defaults. What the settings are is declared once, in `target_settings.py`.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import yaml

from factory.errors import UsageError
from factory.target import SEED_VARIABLES, Flags, Target
from factory.environment import ENV, ENV_FLAG, FILE, FLAG
from factory.target_settings import BY_ENV, BY_NAME, SETTINGS, parse_env

# factory.yaml key -> setting name (each name, its hyphen form and its aliases).
_YAML_KEYS = {key: s.name for s in SETTINGS for key in (s.name, s.name.replace("_", "-"), *s.yaml)}


def _normalise(raw: dict, where: str) -> dict:
    """A YAML mapping -> Target keyword values (seed settings folded into env)."""
    out: dict = {}
    env: dict[str, str] = {}
    for key, value in (raw or {}).items():
        name = _YAML_KEYS.get(str(key), str(key).replace("-", "_"))
        setting = BY_NAME.get(name)
        if name == "env":
            if not isinstance(value, dict):
                raise UsageError(f"{where}: 'env' must be a mapping of NAME: value")
            env.update({str(k): str(v) for k, v in value.items()})
        elif name.upper() in SEED_VARIABLES:
            env[name.upper()] = str(value)
        elif setting and setting.many:
            out[name] = setting.read(value if isinstance(value, list) else [value])
        elif setting:
            out[name] = None if value is None else str(value)
        else:
            known = ", ".join(sorted(s.name for s in SETTINGS if s.name != "env"))
            raise UsageError(f"{where}: unknown setting '{name}'; known: {known}")
    if env:
        out["env"] = env
    return out


def _lift(values: dict) -> dict:
    """Variables that are settings' own (DIB_RELEASE, SERVICE_TYPE, ...) set
    those settings, below the source's own value for the setting."""
    env = dict(values.get("env", {}))
    out = {k: v for k, v in values.items() if k != "env"}
    for name in [n for n in env if n in BY_ENV]:
        setting = BY_ENV[name]
        value = env.pop(name)
        if setting.name not in out:
            out[setting.name] = setting.read(value.split()) if setting.many else value
    if env:
        out["env"] = env
    return out


def _merge(*sources: tuple[dict, str]) -> dict:
    """Sources weakest first, each (values, origin); later ones win, --env-style
    values one by one. Records each value's origin under "origins"."""
    merged: dict = {"origins": {}}
    for values, source in sources:
        for key, value in _lift(values).items():
            if key == "env":
                merged["env"] = {**merged.get("env", {}), **value}
                merged["origins"].update({f"env:{k}": source for k in value})
            else:
                merged[key] = value
                merged["origins"][key] = source
    return merged


def _flag_values(flags: Flags) -> tuple[dict, dict]:
    """(the --env values, the other flags' values)."""
    out: dict = {}
    for setting in SETTINGS:
        value = getattr(flags, setting.name)
        if setting.name == "env":
            continue
        if setting.many:
            if value:
                out[setting.name] = setting.read(value)
        elif value is not None:
            out[setting.name] = value
    return {"env": parse_env(flags.env)} if flags.env else {}, out


def _environment_values(environ: dict[str, str]) -> dict:
    """What the process environment sets: settings through their declared
    variable, element settings as DIB's elements would read them."""
    from factory.elements import search_path
    from factory.environment import taken

    out: dict = {}
    for setting in SETTINGS:
        value = environ.get(setting.env) if setting.env else None
        if value:
            out[setting.name] = setting.read(value.split()) if setting.many else value
    env = taken(environ, search_path())
    if env:
        out["env"] = env
    return out


def read_config_file(path: Path) -> tuple[dict, list[dict]]:
    """(defaults, target mappings) from a factory.yaml."""
    if not path.is_file():
        raise UsageError(f"config file {path} not found; pass an existing factory.yaml to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with 'defaults', 'targets' and/or 'matrix'")
    unknown = set(data) - {"defaults", "targets", "matrix", "cache"}
    if unknown:
        raise UsageError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; use defaults, targets, matrix, cache")
    defaults = _normalise(data.get("defaults") or {}, f"{path}: defaults")
    targets = [_normalise(t, f"{path}: targets[{i}]") for i, t in enumerate(data.get("targets") or [])]
    matrix = data.get("matrix") or {}
    if matrix:
        if not isinstance(matrix, dict) or not all(isinstance(v, list) for v in matrix.values()):
            raise UsageError(f"{path}: 'matrix' maps a setting to a list of values, e.g. distro: [debian, ubuntu]")
        keys = list(matrix)
        for combo in itertools.product(*(matrix[k] for k in keys)):
            targets.append(_normalise(dict(zip(keys, combo)), f"{path}: matrix"))
    return defaults, targets


def load_targets(flags: Flags, environ: dict[str, str] | None = None) -> list[Target]:
    """Targets from --config (if any) with the environment and flags applied
    over each; else from the environment and flags alone."""
    env_flags, other_flags = _flag_values(flags)
    given = [(_environment_values(os.environ if environ is None else environ), ENV), (env_flags, ENV_FLAG),
             (other_flags, FLAG)]
    if flags.config:
        defaults, mappings = read_config_file(flags.config)
        merged = [_merge((defaults, FILE), (m, FILE), *given) for m in mappings or [{}]]
    else:
        merged = [_merge(*given)]
    targets = []
    for values in merged:
        missing = [s.name for s in SETTINGS if s.required and not values.get(s.name)]
        if missing:
            raise UsageError(f"no {' or '.join(missing)} given; pass --{missing[0]} (or set it in factory.yaml)")
        values = dict(values)
        values["env"] = tuple(sorted(values.get("env", {}).items()))
        values["origins"] = tuple(sorted(values["origins"].items()))
        targets.append(Target(**values))
    return targets
