"""The environment as DIB reads it: which exported variables count, their
precedence (flag > --env > environment > factory.yaml > default), what enters
which layer's key, and where each value came from."""

from __future__ import annotations

import textwrap

import pytest

import factory.plan as plan_mod
from factory.config import load_targets
from factory.environment import origin, taken
from factory.plan import plan_stack, settle_environment
from factory.target import Flags
from factory.validate import validate

BUILDER = "sha256:test"


@pytest.fixture(autouse=True)
def no_host_mirrors(monkeypatch):
    monkeypatch.setattr(plan_mod, "host_mirrors", lambda distro, *a, **kw: {})


def one(flags: Flags, environ: dict[str, str], cat, paths):
    (t,) = load_targets(flags, environ)
    return settle_environment(validate(t, cat), paths)


def keys(t, paths) -> dict[str, str]:
    return {l.name: l.key for l in plan_stack(t, BUILDER, paths=paths).layers}


def config(tmp_path, text: str):
    path = tmp_path / "factory.yaml"
    path.write_text(textwrap.dedent(text))
    return path


TARGET = dict(distro="debian", datastore="postgresql", datastore_mode="native")


# --- precedence ------------------------------------------------------------

@pytest.mark.parametrize("given, expected, source", [
    (dict(), "trove", "default"),
    (dict(file=True), "from-file", "file"),
    (dict(file=True, environ=True), "from-env", "env"),
    (dict(file=True, environ=True, env_flag=True), "from-flag-env", "--env"),
])
def test_seed_variable_precedence(tmp_path, cat, paths, given, expected, source):
    flags = Flags(**TARGET, env=["GUEST_USERNAME=from-flag-env"] if given.get("env_flag") else [])
    if given.get("file"):
        flags.config = config(tmp_path, "defaults: {guest_username: from-file}\n")
    environ = {"GUEST_USERNAME": "from-env"} if given.get("environ") else {}
    t, _ = one(flags, environ, cat, paths)
    guest = plan_stack(t, BUILDER, paths=paths).layers[1]
    assert guest.env["GUEST_USERNAME"] == expected
    assert guest.source("GUEST_USERNAME") == source


@pytest.mark.parametrize("given, expected, source", [
    (dict(), "bookworm", "default"),
    (dict(file=True), "bullseye", "file"),
    (dict(file=True, environ=True), "trixie", "env"),
    (dict(file=True, environ=True, env_flag=True), "bookworm", "--env"),
    (dict(file=True, environ=True, env_flag=True, flag=True), "trixie", "flag"),
])
def test_setting_precedence_through_its_variable(tmp_path, cat, paths, given, expected, source):
    """DIB_RELEASE sets the release: --release > --env DIB_RELEASE > exported > factory.yaml > default."""
    flags = Flags(**TARGET, env=["DIB_RELEASE=bookworm"] if given.get("env_flag") else [],
                  release="trixie" if given.get("flag") else None)
    if given.get("file"):
        flags.config = config(tmp_path, "defaults: {release: bullseye}\n")
    environ = {"DIB_RELEASE": "trixie"} if given.get("environ") else {}
    t, _ = one(flags, environ, cat, paths)
    assert t.release == expected
    assert "DIB_RELEASE" not in t.env_dict()  # the setting carries it, once
    base = plan_stack(t, BUILDER, paths=paths).layers[0]
    assert base.env["DIB_RELEASE"] == expected and base.source("DIB_RELEASE") == source


def test_service_type_and_agent_source_from_the_environment(cat, paths):
    t, _ = one(Flags(distro="ubuntu"), {"SERVICE_TYPE": "mysql", "FACTORY_AGENT_SOURCE": "pypi:13.0.1"}, cat, paths)
    assert (t.datastore, t.agent_source, t.mode) == ("mysql", "pypi:13.0.1", "native")
    assert origin("TROVE_AGENT_VERSION", t) == "env" and origin("SERVICE_TYPE", t) == "env"


# --- what enters keys --------------------------------------------------------

def test_exported_guest_username_moves_guest_not_base(cat, paths):
    plain, _ = one(Flags(**TARGET), {}, cat, paths)
    bob, _ = one(Flags(**TARGET), {"GUEST_USERNAME": "bob"}, cat, paths)
    a, b = keys(plain, paths), keys(bob, paths)
    assert a["base"] == b["base"]
    assert a["guest"] != b["guest"] and a["datastore"] != b["datastore"]


def test_exported_release_moves_every_key(cat, paths):
    plain, _ = one(Flags(**TARGET), {}, cat, paths)
    trixie, _ = one(Flags(**TARGET), {"DIB_RELEASE": "trixie"}, cat, paths)
    assert trixie.release == "trixie"
    a, b = keys(plain, paths), keys(trixie, paths)
    assert all(a[n] != b[n] for n in a)


def test_exported_values_give_the_keys_env_flags_give(cat, paths):
    values = {"GUEST_USERNAME": "bob", "DIB_CLOUD_INIT_ETC_HOSTS": "true", "CONTROLLER_IP": "10.0.0.1"}
    exported, _ = one(Flags(**TARGET), values, cat, paths)
    flagged, _ = one(Flags(**TARGET, env=[f"{k}={v}" for k, v in values.items()]), {}, cat, paths)
    assert keys(exported, paths) == keys(flagged, paths)


def test_unread_exports_are_dropped_and_named(cat, paths):
    t, unread = one(Flags(**TARGET), {"TROVESTACK_SCRIPTS": "/opt/stack/trove/integration/scripts",
                                      "DIB_APT_CONF_DIR": "/etc/apt/apt.conf.d"}, cat, paths)
    assert unread == {"TROVESTACK_SCRIPTS", "DIB_APT_CONF_DIR"}
    assert t.env == ()
    plain, _ = one(Flags(**TARGET), {}, cat, paths)
    assert keys(t, paths) == keys(plain, paths)


def test_a_dib_variable_an_element_names_is_read(cat, paths):
    """DIB's convention: DIB_CLOUD_INIT_ETC_HOSTS is read by DIB's base element."""
    t, unread = one(Flags(**TARGET), {"DIB_CLOUD_INIT_ETC_HOSTS": "true"}, cat, paths)
    assert not unread
    assert plan_stack(t, BUILDER, paths=paths).layers[0].env["DIB_CLOUD_INIT_ETC_HOSTS"] == "true"


def test_a_declared_variable_of_a_user_element_is_taken(tmp_path, cat, monkeypatch):
    from factory.elements import search_path

    element = tmp_path / "elements" / "site-motd"
    (element / "install.d").mkdir(parents=True)
    (element / "install.d" / "10-motd").write_text("#!/bin/sh\necho \"$SITE_MOTD\" > /etc/motd\n")
    (element / "factory-reads-env").write_text("# the line for /etc/motd\nSITE_MOTD\n")
    paths = search_path(str(tmp_path / "elements"))
    monkeypatch.setenv("ELEMENTS_PATH", str(tmp_path / "elements"))
    assert taken({"SITE_MOTD": "hello", "HOME": "/root", "PATH": "/bin"}, paths) == {"SITE_MOTD": "hello"}
    t, unread = one(Flags(**TARGET, elements=["site-motd"]), {"SITE_MOTD": "hello"}, cat, paths)
    assert not unread and t.env_dict() == {"SITE_MOTD": "hello"}


def test_derived_and_computed_variables_are_not_taken(paths):
    environ = {"ESCAPED_GUEST_LOGDIR": "x", "TROVE_AGENT_VERSION": "1", "DATASTORE_MODE": "container",
               "DIB_NO_TMPFS": "1", "DIB_DEBUG_TRACE": "1", "GUEST_USERNAME": "", "HOME": "/root"}
    assert taken(environ, paths) == {}


def test_missing_exported_path_is_refused_with_the_path(cat, paths):
    from factory.errors import UsageError

    with pytest.raises(UsageError, match="DATASTORE_PKG_LOCATION '/nonexistent.deb' does not exist"):
        one(Flags(**TARGET), {"DATASTORE_PKG_LOCATION": "/nonexistent.deb"}, cat, paths)
