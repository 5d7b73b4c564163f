"""A target: what one image is made of. Pure data; its fields are the
declared target settings (`target_settings.SETTINGS`)."""

from __future__ import annotations

from dataclasses import field, make_dataclass

from factory import agent
from factory.agent import AgentSource
from factory.target_settings import SETTINGS

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
    # Upstream's trovestack default since Yoga: the drive first, the metadata
    # service where a cloud gives no drive.
    "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive, OpenStack",
}
# Settings that, like the seed's, reach only the layers that declare them.
SCOPED_VARIABLES = SEED_VARIABLES + ("DATASTORE_IMAGE", "DATASTORE_IMAGE_ARCHIVE", "DATASTORE_IMAGE_SOURCE",
                                     "DATASTORE_REPO_URL", "DATASTORE_REPO_KEY")
# Settings that name a file or folder on the build host.
HOST_PATH_VARIABLES = ("DATASTORE_PKG_LOCATION", "SSH_DIR", "PATH_TROVE", "DATASTORE_IMAGE_ARCHIVE", "DATASTORE_REPO_KEY")


class _TargetMethods:
    @property
    def datastores(self) -> tuple[str, ...]:
        """The datastores, in order: one; in container mode none (the generic
        guest) or several."""
        return tuple(d for d in self.datastore.split(",") if d)

    @property
    def name(self) -> str:
        return f"{self.distro}-{self.release}-{'-'.join(self.datastores) or 'guest'}"

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def extra_elements(self) -> list[tuple[str | None, str]]:
        """--element values as (layer, element): NAME goes to the layer that
        takes extra elements (base), LAYER:NAME to that layer."""
        return [tuple(e.split(":", 1)) if ":" in e else (None, e) for e in self.elements]

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


def _field(setting):
    if setting.required:
        return (setting.name, str)
    if setting.many:  # a tuple, or (datastore) one joined string
        return (setting.name, type(setting.default), field(default=setting.default))
    return (setting.name, "str | None", field(default=setting.default))


# `origins`: where each setting and --env-style value came from, as (name, source)
# pairs ("env:NAME" for a variable); shown by `factory plan`, never in a key.
Target = make_dataclass("Target", [_field(s) for s in SETTINGS] + [("origins", tuple, field(default=(), compare=False))],
                        bases=(_TargetMethods,), frozen=True)

# Flag values as the CLI gathers them; None / empty means "not given".
Flags = make_dataclass(
    "Flags",
    [(s.name, "list[str]" if s.many else "str | None", field(default_factory=list) if s.many else field(default=None))
     for s in SETTINGS] + [("config", "Path | None", field(default=None))],
)
Target.__module__ = Flags.__module__ = __name__


def escape_for_sed(value: str) -> str:
    """The ESCAPED_* form the seed's elements feed to sed: slashes escaped."""
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("&", "\\&")
