"""The guest agent source: parsing, what it hands the guest layer, its mode."""

import pytest

from factory import agent
from factory.errors import FactoryError


def test_default_is_a_pinned_release_from_the_index():
    src = agent.parse(None)
    assert (src.kind, src.version) == ("pypi", agent.DEFAULT_VERSION)
    assert src.element_env() == {"TROVE_AGENT_SOURCE": "pypi", "TROVE_AGENT_VERSION": agent.DEFAULT_VERSION}


@pytest.mark.parametrize("text, env", [
    ("pypi:21.0.1", {"TROVE_AGENT_SOURCE": "pypi", "TROVE_AGENT_VERSION": "21.0.1"}),
    ("path:/src/trove/", {"TROVE_AGENT_SOURCE": "path", "PATH_TROVE": "/src/trove"}),
    ("git:https://git.example/openstack/trove@stable/2025.2",
     {"TROVE_AGENT_SOURCE": "git", "TROVE_AGENT_GIT": "https://git.example/openstack/trove", "BRANCH_OVERRIDE": "stable/2025.2"}),
    ("git:ssh://me@git.example/trove", {"TROVE_AGENT_SOURCE": "git", "TROVE_AGENT_GIT": "ssh://me@git.example/trove"}),
    ("runtime", {"TROVE_AGENT_SOURCE": "runtime"}),
])
def test_sources_hand_the_guest_layer_their_settings(text, env):
    assert agent.parse(text).element_env() == env


@pytest.mark.parametrize("text, says", [
    ("pip:1", "pypi[:VERSION]"),
    ("pypi:latest", "not a release number"),
    ("path:relative/dir", "absolute path"),
    ("git:nohost", "repository URL"),
    ("runtime:x", "takes no value"),
])
def test_bad_sources_say_what_to_write(text, says):
    with pytest.raises(FactoryError, match=None) as e:
        agent.parse(text)
    assert says in str(e.value)


@pytest.mark.parametrize("text, mode", [
    ("pypi:13.0.1", "native"), ("pypi:14.0.0", "container"), ("pypi:26.0.0", "container"),
    ("path:/src/trove", "container"), ("runtime", "container"),
])
def test_default_mode_follows_the_release(text, mode):
    assert agent.parse(text).default_mode() == mode


def test_warnings_for_development_agent_and_mismatched_mode():
    assert agent.warnings(agent.parse("pypi:13.0.1"), "native", "postgresql") == []
    (native,) = agent.warnings(agent.parse(None), "native", "postgresql")
    assert "runs datastores in containers" in native
    (dev,) = agent.warnings(agent.parse("runtime"), "container", "postgresql")
    assert "never use this image in production" in dev
    assert agent.record(agent.parse("runtime"), "container", "postgresql")["for_production"] is False
