"""Which guest agent releases can work on which images: rules kept as data
(layers/_agents.yaml), found by letting Trove drive the guests."""

from __future__ import annotations

from factory.layers import load_agent_rules


def _rules() -> dict:
    return load_agent_rules()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split("."))


def python_of(distro: str, release: str) -> str | None:
    return (_rules().get("python", {}).get(distro) or {}).get(str(release))


def problems(agent_release: tuple[int, int] | None, distro: str, release: str, datastore: str) -> list[str]:
    """Why Trove could not drive this agent on this image; empty when nothing is known against it."""
    if agent_release is None:
        return []
    for rule in _rules().get("agents", []):
        if agent_release >= _version(rule["below"]):
            continue
        found = []
        python = python_of(distro, release)
        if python and "python_below" in rule and _version(python) >= _version(rule["python_below"]):
            found.append(f"the {agent_release[0]}.x agent needs Python below {rule['python_below']} "
                         f"and {distro} {release} has {python}: {rule['python_why']}")
        if datastore in rule.get("datastores", {}):
            found.append(f"the {agent_release[0]}.x agent cannot run {datastore}: "
                         f"{rule['datastores'][datastore]}")
        return found
    return []


# The last agent release that drives natively installed datastores.
LAST_NATIVE_AGENT = (13, 0)


def native_releases(distro: str, releases: tuple[str, ...], datastore: str) -> tuple[list[str], str]:
    """The releases on which the last native-era agent can drive the
    datastore, and, when none, why not."""
    ok, why = [], ""
    for release in releases:
        found = problems(LAST_NATIVE_AGENT, distro, release, datastore)
        if found:
            why = why or found[-1]
        else:
            ok.append(release)
    return ok, why


def target_warnings(target) -> list[str]:
    """One line per known reason Trove could not drive the target's guest."""
    if target.mode != "native":
        return []
    return [f"Trove cannot drive this image: {p}" for p in
            problems(target.agent.release(), target.distro, target.release, target.datastore)]
