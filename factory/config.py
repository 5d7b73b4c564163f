"""Targets: what one image is made of, from flags or a factory.yaml matrix.

A target is pure data. `load_targets` merges file defaults, the file's targets
and matrix, and the command-line flags, then `validate` checks every target
against what `elements/` and `layers/` actually hold.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from factory import agent
from factory.agent import AgentSource
from factory.errors import FactoryError
from factory.store.remote import parse_url

ARCHES = ("amd64", "arm64")
FORMATS = ("qcow2", "raw", "tar", "vmdk", "vdi", "vhdx")

# The seed's variables: each is a first-class target setting handed to the
# elements under its own name. ESCAPED_* forms are derived, never asked for.
SEED_VARIABLES = (
    "GUEST_USERNAME",
    "HOST_USERNAME",
    "HOST_SCP_USERNAME",
    "CONTROLLER_IP",
    "GUEST_LOGDIR",
    "SSH_DIR",
    "DIB_CLOUD_INIT_DATASOURCES",
    "DATASTORE_PKG_LOCATION",
    "BRANCH_OVERRIDE",
    "PATH_TROVE",
)
SEED_DEFAULTS = {
    "GUEST_USERNAME": "trove",
    "GUEST_LOGDIR": "/var/log/trove",
    "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive",
}
# Settings that, like the seed's, reach only the layers that declare them.
SCOPED_VARIABLES = SEED_VARIABLES + ("DATASTORE_IMAGE", "DATASTORE_IMAGE_ARCHIVE", "DATASTORE_REPO_URL", "DATASTORE_REPO_KEY")
# Settings that name a file or folder on the build host.
HOST_PATH_VARIABLES = ("DATASTORE_PKG_LOCATION", "SSH_DIR", "PATH_TROVE", "DATASTORE_IMAGE_ARCHIVE", "DATASTORE_REPO_KEY")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE = re.compile(r"^\d+(\.\d+)?[KMGT]?$", re.I)


@dataclass(frozen=True)
class Target:
    distro: str
    datastore: str
    release: str | None = None
    arch: str = "amd64"
    datastore_version: str | None = None
    agent_source: str | None = None
    datastore_mode: str | None = None  # native | container; default from the agent release
    elements: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # seed settings and --env, sorted
    image_size: str | None = None
    formats: tuple[str, ...] = ("qcow2",)
    output: str = "out"

    @property
    def name(self) -> str:
        return f"{self.distro}-{self.release}-{self.datastore}"

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def template_values(self) -> dict[str, str]:
        return {"distro": self.distro, "release": self.release, "datastore": self.datastore, "arch": self.arch,
                "mode": self.mode}

    @property
    def agent(self) -> AgentSource:
        return agent.parse(self.agent_source)

    @property
    def mode(self) -> str:
        return self.datastore_mode or self.agent.default_mode()

    def element_env(self) -> dict[str, str]:
        """Every variable the target hands to elements (layers pick their share)."""
        env = dict(SEED_DEFAULTS)
        env.update(self.agent.element_env())
        env.update(self.env_dict())
        env["DIB_RELEASE"] = self.release or ""
        env["SERVICE_TYPE"] = self.datastore
        env["DATASTORE_MODE"] = self.mode
        if self.datastore_version:
            env["DATASTORE_VERSION"] = self.datastore_version
        for var in ("GUEST_LOGDIR", "PATH_TROVE"):
            if env.get(var):
                env[f"ESCAPED_{var}"] = escape_for_sed(env[var])
        return env


def escape_for_sed(value: str) -> str:
    """The ESCAPED_* form the seed's elements feed to sed: slashes escaped."""
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("&", "\\&")


@dataclass(frozen=True)
class Catalog:
    """What the stack can build: distros and their datastores, found in the data."""

    distros: dict[str, tuple[str, ...]]  # distro -> datastores
    default_releases: dict[str, str] = field(default_factory=dict)
    releases: dict[str, tuple[str, ...]] = field(default_factory=dict)


def parse_env(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise FactoryError(f"--env '{item}' is not KEY=VALUE; write it as e.g. --env GUEST_USERNAME=trove")
        key, value = item.split("=", 1)
        if not _ENV_NAME.match(key):
            raise FactoryError(f"--env name '{key}' is not a valid variable name (letters, digits, _)")
        env[key] = value
    return env


def split_formats(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part and part not in out:
                out.append(part)
    return tuple(out)


# Flag values as the CLI gathers them; None / empty means "not given".
@dataclass
class Flags:
    distro: str | None = None
    release: str | None = None
    arch: str | None = None
    datastore: str | None = None
    datastore_version: str | None = None
    agent_source: str | None = None
    datastore_mode: str | None = None
    elements: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    image_size: str | None = None
    formats: list[str] = field(default_factory=list)
    output: str | None = None
    config: Path | None = None


_TARGET_KEYS = {f.name for f in fields(Target)}
_YAML_ALIASES = {"format": "formats", "element": "elements", "package": "packages", "version": "datastore_version"}


def _normalise(raw: dict, where: str) -> dict:
    """A YAML mapping -> Target keyword values (seed settings folded into env)."""
    out: dict = {}
    env: dict[str, str] = {}
    for key, value in (raw or {}).items():
        key = _YAML_ALIASES.get(str(key), str(key)).replace("-", "_")
        if key == "env":
            if not isinstance(value, dict):
                raise FactoryError(f"{where}: 'env' must be a mapping of NAME: value")
            env.update({str(k): str(v) for k, v in value.items()})
        elif key.upper() in SEED_VARIABLES:
            env[key.upper()] = str(value)
        elif key in ("elements", "packages", "formats"):
            items = value if isinstance(value, list) else [value]
            out[key] = tuple(split_formats(items) if key == "formats" else (str(i) for i in items))
        elif key in _TARGET_KEYS:
            out[key] = None if value is None else str(value)
        else:
            raise FactoryError(f"{where}: unknown setting '{key}'; known: {', '.join(sorted(_TARGET_KEYS - {'env'}))}")
    if env:
        out["env"] = env
    return out


def _merge(*layers: dict) -> dict:
    merged: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "env":
                merged["env"] = {**merged.get("env", {}), **value}
            else:
                merged[key] = value
    return merged


def _flag_values(flags: Flags) -> dict:
    out: dict = {}
    for key in ("distro", "release", "arch", "datastore", "datastore_version", "agent_source", "datastore_mode",
                "image_size", "output"):
        value = getattr(flags, key)
        if value is not None:
            out[key] = value
    if flags.elements:
        out["elements"] = tuple(flags.elements)
    if flags.packages:
        out["packages"] = tuple(p for v in flags.packages for p in v.split(",") if p)
    if flags.formats:
        out["formats"] = split_formats(flags.formats)
    if flags.env:
        out["env"] = parse_env(flags.env)
    return out


def read_config_file(path: Path) -> tuple[dict, list[dict]]:
    """(defaults, target mappings) from a factory.yaml."""
    if not path.is_file():
        raise FactoryError(f"config file {path} not found; pass an existing factory.yaml to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise FactoryError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise FactoryError(f"{path}: expected a mapping with 'defaults', 'targets' and/or 'matrix'")
    unknown = set(data) - {"defaults", "targets", "matrix", "cache"}
    if unknown:
        raise FactoryError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; use defaults, targets, matrix, cache")
    defaults = _normalise(data.get("defaults") or {}, f"{path}: defaults")
    targets = [_normalise(t, f"{path}: targets[{i}]") for i, t in enumerate(data.get("targets") or [])]
    matrix = data.get("matrix") or {}
    if matrix:
        if not isinstance(matrix, dict) or not all(isinstance(v, list) for v in matrix.values()):
            raise FactoryError(f"{path}: 'matrix' maps a setting to a list of values, e.g. distro: [debian, ubuntu]")
        keys = list(matrix)
        for combo in itertools.product(*(matrix[k] for k in keys)):
            targets.append(_normalise(dict(zip(keys, combo)), f"{path}: matrix"))
    return defaults, targets


def load_targets(flags: Flags) -> list[Target]:
    """Targets from --config (if any) with flags applied over each; else from flags alone."""
    given = _flag_values(flags)
    if flags.config:
        defaults, mappings = read_config_file(flags.config)
        if not mappings:
            mappings = [{}]
        merged = [_merge(defaults, m, given) for m in mappings]
    else:
        merged = [given]
    targets = []
    for values in merged:
        missing = [k for k in ("distro", "datastore") if not values.get(k)]
        if missing:
            raise FactoryError(f"no {' or '.join(missing)} given; pass --{missing[0]} (or set it in factory.yaml)")
        values = dict(values)
        values["env"] = tuple(sorted(values.get("env", {}).items()))
        targets.append(Target(**values))
    return targets


def catalog(element_dirs: list[Path], layers_dir: Path | list[Path] | None = None) -> Catalog:
    """Distros and datastores, derived from the layer templates and the elements present.

    A distro is valid when the guest layer's element template names an element
    that exists for it (e.g. `debian-guest`); its datastores are the elements
    matching the datastore layer's template (e.g. `debian-postgresql`).
    """
    from factory.layers import load_meta, load_stack

    stack = load_stack(layers_dir)
    meta = load_meta(layers_dir)
    from factory.elements import dib_elements_dir

    def listing(dirs: list[Path]) -> list[str]:
        return sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()})

    names = listing(element_dirs)
    # Guest and datastore elements are the factory's (or the user's), never
    # DIB's own distro helpers such as debian-systemd or ubuntu-common.
    from factory.hostpaths import visible

    dib_dir = visible(dib_elements_dir().resolve()).resolve()
    own = listing([d for d in element_dirs if d.resolve() != dib_dir])
    distro_templates = [t for layer in stack for t in layer.elements if "{distro}" in t and "{datastore}" not in t]
    datastore_templates = [t for layer in stack for t in layer.elements if "{datastore}" in t]

    def matches(template: str, name: str) -> dict[str, str] | None:
        pattern = re.escape(template)
        for key in ("distro", "datastore", "release", "arch"):
            pattern = pattern.replace(re.escape("{" + key + "}"), f"(?P<{key}>[a-z0-9][a-z0-9.]*)")
        m = re.fullmatch(pattern, name)
        return m.groupdict() if m else None

    # Our own distro templates that are not DIB's (DIB ships e.g. debian-minimal
    # for many distros the factory has no guest element for).
    candidates: set[str] = set()
    for template in distro_templates:
        for name in own:
            m = matches(template, name)
            if m and set(m) == {"distro"}:
                candidates.add(m["distro"])
    distros: dict[str, tuple[str, ...]] = {}
    for distro in sorted(candidates):
        needed = [t.replace("{distro}", distro) for t in distro_templates if "{release}" not in t and "{arch}" not in t]
        if not all(n in names for n in needed):
            continue
        stores = set()
        for template in datastore_templates:
            for name in own:
                m = matches(template.replace("{distro}", distro), name)
                if m and set(m) == {"datastore"}:
                    stores.add(m["datastore"])
        produced = {t.replace("{distro}", distro) for t in distro_templates}
        distros[distro] = tuple(sorted(s for s in stores if f"{distro}-{s}" not in produced))
    return Catalog(
        distros=distros,
        default_releases={d: str(v.get("default_release")) for d, v in meta.items() if v.get("default_release")},
        releases={d: tuple(str(r) for r in v.get("releases") or ()) for d, v in meta.items()},
    )


def validate(target: Target, cat: Catalog) -> Target:
    """A complete, checked target (release filled in); one error line per problem."""
    problems: list[str] = []
    if target.distro not in cat.distros:
        problems.append(f"unknown distro '{target.distro}'; valid distros: {', '.join(cat.distros) or '(none found)'}")
    else:
        stores = cat.distros[target.distro]
        if target.datastore not in stores:
            problems.append(
                f"unknown datastore '{target.datastore}' for {target.distro}; valid datastores: {', '.join(stores) or '(none)'}"
            )
    release = target.release or cat.default_releases.get(target.distro)
    if target.distro in cat.distros and not release:
        problems.append(f"no release given for {target.distro}; pass --release")
    if target.arch not in ARCHES:
        problems.append(f"unknown arch '{target.arch}'; valid: {', '.join(ARCHES)}")
    bad_formats = [f for f in target.formats if f not in FORMATS]
    if bad_formats:
        problems.append(f"unknown format(s) {', '.join(bad_formats)}; valid: {', '.join(FORMATS)}")
    if not target.formats:
        problems.append("no output format; pass e.g. --format qcow2")
    source = None
    try:
        source = target.agent
    except FactoryError as e:
        problems.append(str(e))
    if target.datastore_mode and target.datastore_mode not in agent.MODES:
        problems.append(f"--datastore-mode '{target.datastore_mode}' is not known; use {' or '.join(agent.MODES)}")
    if source and source.kind == "runtime":
        missing = [v for v in agent.RUNTIME_SETTINGS if not target.env_dict().get(v)]
        if missing:
            problems.append(f"--agent-source runtime needs {', '.join(missing)} (the guest copies the agent from the controller at boot)")
    if source and source.kind == "path" and not os.path.isdir(source.location):
        problems.append(f"--agent-source path:{source.location}: no such folder on this host; point it at a Trove checkout")
    if target.image_size and not _SIZE.match(target.image_size):
        problems.append(f"--image-size '{target.image_size}' is not a size; use e.g. 3G or 2.5 (GiB, as DIB)")
    env = target.env_dict()
    for key in env:
        if not _ENV_NAME.match(key):
            problems.append(f"environment name '{key}' is not a valid variable name")
        if key.startswith("ESCAPED_"):
            problems.append(f"{key} is derived from {key[8:]}; set {key[8:]} instead")
    if env.get("CONTROLLER_IP"):
        try:
            ipaddress.ip_address(env["CONTROLLER_IP"])
        except ValueError:
            problems.append(f"CONTROLLER_IP '{env['CONTROLLER_IP']}' is not an IP address")
    # In development mode PATH_TROVE and SSH_DIR name the controller's side.
    on_host = [v for v in HOST_PATH_VARIABLES if not (source and source.kind == "runtime" and v == "PATH_TROVE")]
    for var in on_host:
        value = env.get(var)
        if value and not os.path.exists(value):
            problems.append(f"{var} '{value}' does not exist on this host; point it at an existing file or folder")
    if problems:
        raise FactoryError("\n".join(problems))
    return replace(target, release=release)


@dataclass(frozen=True)
class CacheSettings:
    """Where layers are pulled from (in order) and pushed to."""

    sources: tuple[str, ...] = ()
    destination: str | None = None
    required: bool = False
    s3_endpoint_url: str | None = None


_CACHE_KEYS = {"from": "sources", "to": "destination", "required": "required", "s3_endpoint_url": "s3_endpoint_url"}


def _cache_file_values(path: Path | None) -> dict:
    if path is None:
        return {}
    read_config_file(path)  # the whole file is checked, as for a build
    raw = (yaml.safe_load(path.read_text()) or {}).get("cache") or {}
    if not isinstance(raw, dict):
        raise FactoryError(f"{path}: 'cache' is a mapping with from, to, required, s3_endpoint_url")
    unknown = {str(k).replace("-", "_") for k in raw} - set(_CACHE_KEYS)
    if unknown:
        raise FactoryError(f"{path}: cache: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(_CACHE_KEYS)}")
    return {_CACHE_KEYS[str(k).replace("-", "_")]: v for k, v in raw.items()}


def _listed(value) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value or "").replace(",", " ").split()
    return tuple(str(i) for i in items if str(i).strip())


def cache_settings(sources: list[str], destination: str | None, required: bool, s3_endpoint_url: str | None,
                   config: Path | None = None, environ: dict[str, str] | None = None) -> CacheSettings:
    """Flags win over FACTORY_CACHE_* variables, which win over factory.yaml's `cache:`."""
    env = os.environ if environ is None else environ
    file = _cache_file_values(config)
    settings = CacheSettings(
        sources=_listed(sources) or _listed(env.get("FACTORY_CACHE_FROM")) or _listed(file.get("sources")),
        destination=destination or env.get("FACTORY_CACHE_TO") or file.get("destination") or None,
        required=required or env.get("FACTORY_CACHE_REQUIRED", "").lower() in ("1", "true", "yes") or bool(file.get("required")),
        s3_endpoint_url=s3_endpoint_url or env.get("FACTORY_S3_ENDPOINT_URL") or file.get("s3_endpoint_url") or None,
    )
    for url in (*settings.sources, *([settings.destination] if settings.destination else [])):
        parse_url(url)
    return settings
