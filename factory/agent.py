"""The Trove guest agent a target bakes into its image (or, in development,
fetches at boot), and the datastore mode its release implies.

Sources, as `--agent-source` takes them:
  pypi[:VERSION]   a release from the package index (default: DEFAULT_VERSION)
  path:DIR         a Trove checkout on the build host (its content is in the key)
  git:URL[@REF]    a repository and ref (REF is the seed's BRANCH_OVERRIDE)
  runtime          the seed's development way: nothing baked in, the guest
                   copies the agent from the controller at boot (not for production)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory.errors import FactoryError

DEFAULT_VERSION = "26.0.0"
# From Victoria (14.0.0) on, the agent runs the database in a container it
# starts itself; earlier releases drove a datastore installed in the image.
CONTAINER_SINCE = (14, 0)
MODES = ("native", "container")
KINDS = ("pypi", "path", "git", "runtime")
# Settings the development agent needs to reach the controller at boot.
RUNTIME_SETTINGS = ("HOST_SCP_USERNAME", "CONTROLLER_IP", "PATH_TROVE", "SSH_DIR")
_VERSION = re.compile(r"^\d+(\.\d+){0,2}([.-]?(a|b|rc|dev|post)\d*)*$")


@dataclass(frozen=True)
class AgentSource:
    kind: str
    version: str = ""  # pypi
    location: str = ""  # path: folder; git: URL
    ref: str = ""  # git

    def describe(self) -> str:
        if self.kind == "pypi":
            return f"trove {self.version} from the package index"
        if self.kind == "path":
            return f"Trove checkout {self.location}"
        if self.kind == "git":
            return f"{self.location} at {self.ref or 'its default branch'}"
        return "fetched from the controller at boot (development only)"

    def element_env(self) -> dict[str, str]:
        """What the guest layer's elements read to install the agent."""
        env = {"TROVE_AGENT_SOURCE": self.kind}
        if self.kind == "pypi":
            env["TROVE_AGENT_VERSION"] = self.version
        elif self.kind == "path":
            env["PATH_TROVE"] = self.location
        elif self.kind == "git":
            env["TROVE_AGENT_GIT"] = self.location
            if self.ref:
                env["BRANCH_OVERRIDE"] = self.ref
        return env

    def release(self) -> tuple[int, int] | None:
        """(major, minor) for a package-index release; None when unknown."""
        if self.kind != "pypi":
            return None
        parts = re.findall(r"\d+", self.version)
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) if parts else None

    def default_mode(self) -> str:
        """A source with no release number is taken to be current Trove."""
        release = self.release()
        return "native" if release is not None and release < CONTAINER_SINCE else "container"

    @property
    def for_production(self) -> bool:
        return self.kind != "runtime"


def parse(text: str | None) -> AgentSource:
    if not text:
        return AgentSource("pypi", version=DEFAULT_VERSION)
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise FactoryError(f"--agent-source '{text}' is not known; use pypi[:VERSION], path:DIR, git:URL[@REF] or runtime")
    if kind == "pypi":
        version = rest or DEFAULT_VERSION
        if not _VERSION.match(version):
            raise FactoryError(f"--agent-source pypi:{rest}: '{rest}' is not a release number; use e.g. pypi:{DEFAULT_VERSION}")
        return AgentSource("pypi", version=version)
    if kind == "path":
        if not rest.startswith("/"):
            raise FactoryError(f"--agent-source path:{rest}: give the Trove checkout as an absolute path, e.g. path:/src/trove")
        return AgentSource("path", location=rest.rstrip("/") or "/")
    if kind == "git":
        # The ref follows an '@' in the path (before it, '@' may be user@host).
        url, ref = rest, ""
        scheme, sep, after = rest.partition("://")
        host, slash, path = after.partition("/") if sep else ("", "", rest)
        if "@" in path:
            path, ref = path.rsplit("@", 1)
            url = f"{scheme}{sep}{host}{slash}{path}" if sep else path
        if not url or "://" not in url and not url.startswith("/"):
            raise FactoryError(f"--agent-source git:{rest}: give a repository URL, e.g. git:https://HOST/openstack/trove@stable/2025.2")
        return AgentSource("git", location=url, ref=ref)
    if rest:
        raise FactoryError("--agent-source runtime takes no value; the controller is set by CONTROLLER_IP and PATH_TROVE")
    return AgentSource("runtime")


def warnings(source: AgentSource, mode: str, datastore: str) -> list[str]:
    """What an operator must know about this agent and datastore mode."""
    out = []
    if not source.for_production:
        out.append("development guest agent: the guest copies the agent from CONTROLLER_IP at boot over SSH with "
                   "the build host's key; never use this image in production")
    if mode == "native" and source.default_mode() == "container":
        out.append(f"{source.describe()} runs datastores in containers; the natively installed {datastore} is driven "
                   "by agents before 14.0.0 (pass an older --agent-source pypi:VERSION, or --datastore-mode container)")
    return out


def record(source: AgentSource, mode: str, datastore: str) -> dict:
    """The manifest's account of the agent."""
    return {"source": source.kind, "version": source.version or None, "location": source.location or None,
            "ref": source.ref or None, "datastore_mode": mode, "for_production": source.for_production,
            "warnings": warnings(source, mode, datastore)}
