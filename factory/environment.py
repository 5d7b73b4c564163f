"""The environment, as DIB reads it: which exported variables the factory
takes, which layer reads which, and where each value a layer receives came
from.

Sources, strongest first: a flag, `--env`, the process environment,
factory.yaml, the default. The process environment is read the way
disk-image-create reads it: `DIB_*` variables, the seed's variables
(GUEST_USERNAME, ...), the variables a layer file lists under `env:` and
those an element declares in its `factory-reads-env` file (one name a line).
A layer reads a variable when its layer file lists it, when an element it
runs declares it, or (DIB's convention: elements read their settings from the
environment by name) when a file of an element it runs, or an environment.d
file of any element it sees, names it. An exported variable that no layer of
the target reads is left out (it would only move keys) and named in one
warning.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from factory.elements import Element
from factory.layers import LayerSpec, load_dib_rules, load_stack
from factory.target import SEED_VARIABLES
from factory.target_settings import BY_ENV

# Where a value came from, as `factory plan` shows it.
FLAG, ENV_FLAG, ENV, FILE, DEFAULT, DERIVED = "flag", "--env", "env", "file", "default", "derived"
DECLARATION = "factory-reads-env"
# The seed exports these too; SERVICE_TYPE is the datastore, the rest as named.
SEED_EXPORTS = SEED_VARIABLES + ("SERVICE_TYPE", "TROVESTACK_SCRIPTS")
# What the factory computes from a setting; an exported value never replaces it.
FROM_SETTING = {
    **{name: s.name for name, s in BY_ENV.items()},
    "TROVE_AGENT_SOURCE": "agent_source", "TROVE_AGENT_VERSION": "agent_source", "TROVE_AGENT_GIT": "agent_source",
    "DATASTORE_MODE": "datastore_mode", "DATASTORE_VERSION": "datastore_version",
}


def driver_variables() -> dict[str, str]:
    """DIB's own variables (read by disk-image-create, not by an element) ->
    what the factory does with them: env, trace or ignored."""
    return {str(k): str(v) for k, v in (load_dib_rules().get("driver") or {}).items()}


def _declared_anywhere(paths: list[Path]) -> set[str]:
    names = {n for spec in load_stack() for n in spec.env}
    for folder in paths:
        for decl in folder.glob(f"*/{DECLARATION}"):
            names |= declared(decl.parent)
    return names


def taken(environ: dict[str, str], paths: list[Path]) -> dict[str, str]:
    """The exported variables the factory reads as element settings (set and
    not empty, as DIB's elements test them); settings' own variables
    (DIB_RELEASE, ...) are read by the settings, ESCAPED_* are derived."""
    wanted = _declared_anywhere(paths) | set(SEED_EXPORTS)
    driver = driver_variables()
    return {k: v for k, v in sorted(environ.items())
            if v and (k.startswith("DIB_") or k in wanted) and not k.startswith("ESCAPED_")
            and k not in FROM_SETTING and driver.get(k, "env") == "env"}


def driver_values(environ: dict[str, str], kind: str) -> dict[str, str]:
    """Exported driver variables of one kind (trace, ignored), set and not empty."""
    return {k: environ[k] for k, v in driver_variables().items() if v == kind and environ.get(k)}


def declared(element_dir: Path) -> set[str]:
    """Names an element's `factory-reads-env` file declares."""
    path = element_dir / DECLARATION
    if not path.is_file():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


@lru_cache(maxsize=None)
def _words(element_dir: Path, only_environment_d: bool) -> frozenset[str]:
    """Every variable-like word in an element's files (its READMEs aside)."""
    root = element_dir / "environment.d" if only_environment_d else element_dir
    words: set[str] = set()
    for path in sorted(root.rglob("*")) if root.is_dir() else ():
        if path.is_file() and not path.name.startswith("README"):
            words |= set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", path.read_text(errors="replace")))
    return frozenset(words)


def reads(spec: LayerSpec, runs: dict[str, Element], visible: dict[str, Element]) -> set[str]:
    """The variables a layer's elements read (see the module's docstring)."""
    names = set(spec.env)
    for element in runs.values():
        names |= declared(element.path) | _words(element.path, False)
    for element in visible.values():
        names |= _words(element.path, True)
    return names


def origin(name: str, target) -> str:
    """Where the value a layer receives as `name` came from."""
    origins = dict(target.origins)
    if name.startswith("ESCAPED_"):
        return DERIVED
    if name in FROM_SETTING:
        return origins.get(FROM_SETTING[name], DEFAULT)
    return origins.get(f"env:{name}", DEFAULT)
