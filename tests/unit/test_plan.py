"""Planning a target: which elements each layer runs, and what moves its key."""

from __future__ import annotations

import os
import textwrap

import pytest

import factory.plan as plan_mod
from factory import LAYERS_DIR
from factory.target import Target
from factory.plan import host_inputs, layer_env, plan_stack
from factory.layers import load_stack

BUILDER = "sha256:test"


@pytest.fixture(autouse=True)
def no_host_mirrors(monkeypatch):
    """Plans must not depend on this machine's /etc/apt."""
    mirrors: dict[str, str] = {}
    monkeypatch.setattr(plan_mod, "host_mirrors", lambda distro, *a, **kw: dict(mirrors))
    return mirrors


@pytest.fixture
def plan(paths):
    def make(t: Target, **kw):
        return plan_stack(t, builder_id=BUILDER, paths=paths, **kw)

    return make


def keys(p) -> dict[str, str]:
    return {l.name: l.key for l in p.layers}


def layer(p, name):
    (found,) = [l for l in p.layers if l.name == name]
    return found


# --- what each layer runs --------------------------------------------------


def test_debian_postgresql_layers(plan, target):
    p = plan(target("debian", "postgresql"))
    assert [l.name for l in p.layers] == ["base", "guest", "datastore"]
    base, guest, datastore = p.layers

    for name in ("debian-minimal", "base", "vm", "cloud-init", "cloud-init-datasources", "openssh-server"):
        assert name in base.runs, name
    assert "block-device-mbr" in base.runs  # DIB's implicit block-device element for vm on amd64
    assert "debian-guest" not in base.runs and "debian-postgresql" not in base.runs

    assert {"debian-guest", "trove-guest"} <= set(guest.runs)
    assert {"package-installs", "pkg-map", "install-bin", "install-static"} <= set(guest.runs)
    assert "debian-minimal" not in guest.runs and "vm" not in guest.runs
    assert "debian-postgresql" not in guest.runs

    assert "debian-postgresql" in datastore.runs
    assert "package-installs" in datastore.runs
    assert "debian-guest" not in datastore.runs and "trove-guest" not in datastore.runs
    assert "debian-minimal" not in datastore.runs

    # visible grows: each layer sees everything below it
    assert set(base.visible) <= set(guest.visible) <= set(datastore.visible)
    assert "debian-minimal" in datastore.visible
    # runs always subset of visible; key inputs record the runs
    for l in p.layers:
        assert set(l.runs) <= set(l.visible)
        assert set(l.inputs.new_elements) == set(l.runs)
        assert set(l.inputs.elements) == set(l.visible)
        assert l.inputs.builder_image == BUILDER


def test_arm64_uses_efi_block_device(plan, target):
    base = plan(target("debian", "redis", arch="arm64")).layers[0]
    assert "block-device-efi" in base.runs and "block-device-mbr" not in base.runs
    assert base.env["ARCH"] == "arm64"


def test_parent_chain(plan, target):
    p = plan(target("debian", "postgresql"))
    assert p.layers[0].inputs.parent is None
    for below, above in zip(p.layers, p.layers[1:]):
        assert above.inputs.parent == below.key
    assert len(set(keys(p).values())) == 3
    assert p.to_json()["layers"][1]["parent"] == p.layers[0].key


def test_plan_is_deterministic(plan, target):
    assert keys(plan(target("debian", "postgresql"))) == keys(plan(target("debian", "postgresql")))


def test_builder_image_changes_every_key(paths, target):
    t = target("debian", "postgresql")
    a = plan_stack(t, builder_id="sha256:one", paths=paths)
    b = plan_stack(t, builder_id="sha256:two", paths=paths)
    assert all(a.layers[i].key != b.layers[i].key for i in range(3))


# --- sharing and invalidation ---------------------------------------------


def test_datastores_share_base_and_guest(plan, target):
    pg = keys(plan(target("debian", "postgresql")))
    maria = keys(plan(target("debian", "mariadb")))
    assert pg["base"] == maria["base"]
    assert pg["guest"] == maria["guest"]
    assert pg["datastore"] != maria["datastore"]


def test_release_changes_every_key(plan, target):
    a = keys(plan(target("debian", "postgresql", release="bookworm")))
    b = keys(plan(target("debian", "postgresql", release="trixie")))
    assert all(a[n] != b[n] for n in a)


def test_guest_setting_leaves_base_alone(plan, target):
    default = keys(plan(target("debian", "postgresql")))
    alice = plan(target("debian", "postgresql", env={"GUEST_USERNAME": "alice"}))
    assert keys(alice)["base"] == default["base"]
    assert keys(alice)["guest"] != default["guest"]
    assert keys(alice)["datastore"] != default["datastore"]
    assert layer(alice, "guest").env["GUEST_USERNAME"] == "alice"
    assert "GUEST_USERNAME" not in layer(alice, "base").env


def test_explicit_default_equals_implicit_default(plan, target):
    # Spelling out a default must not rebuild anything.
    a = keys(plan(target("debian", "postgresql")))
    b = keys(plan(target("debian", "postgresql", env={"GUEST_USERNAME": "trove"})))
    assert a == b


def test_user_env_changes_all_layers(plan, target):
    default = keys(plan(target("debian", "postgresql")))
    foo = plan(target("debian", "postgresql", env={"FOO": "1"}))
    assert all(keys(foo)[n] != default[n] for n in default)
    assert all(l.env["FOO"] == "1" for l in foo.layers)


def test_datastore_pkg_location_by_content(plan, target, tmp_path):
    pkg = tmp_path / "pg-debs.tar"
    pkg.write_bytes(b"first")
    t = target("debian", "postgresql", env={"DATASTORE_PKG_LOCATION": str(pkg)})
    first = plan(t)
    ds = layer(first, "datastore")
    assert ds.env["DATASTORE_PKG_LOCATION"] == str(pkg)
    assert set(ds.host_inputs) == {str(pkg)}
    assert layer(first, "base").host_inputs == {} and layer(first, "guest").host_inputs == {}

    os.utime(pkg, (1_000_000, 1_000_000))
    assert keys(plan(t)) == keys(first)

    pkg.write_bytes(b"second")
    changed = keys(plan(t))
    assert changed["base"] == keys(first)["base"]
    assert changed["guest"] == keys(first)["guest"]
    assert changed["datastore"] != keys(first)["datastore"]


def test_datastore_pkg_location_directory(plan, target, tmp_path):
    d = tmp_path / "pkgs"
    d.mkdir()
    (d / "a.deb").write_bytes(b"a")
    t = target("debian", "postgresql", env={"DATASTORE_PKG_LOCATION": str(d)})
    first = keys(plan(t))
    (d / "b.deb").write_bytes(b"b")
    second = keys(plan(t))
    assert first["guest"] == second["guest"] and first["datastore"] != second["datastore"]


def test_extra_packages_only_in_datastore(plan, target):
    default = plan(target("debian", "postgresql"))
    extra = plan(target("debian", "postgresql", packages=("vim", "curl")))
    assert keys(extra)["base"] == keys(default)["base"]
    assert keys(extra)["guest"] == keys(default)["guest"]
    assert keys(extra)["datastore"] != keys(default)["datastore"]
    assert layer(extra, "datastore").packages == ("vim", "curl")
    assert layer(extra, "base").packages == () and layer(extra, "guest").packages == ()


def test_extra_element_goes_to_base(plan, target):
    default = plan(target("debian", "postgresql"))
    extra = plan(target("debian", "postgresql", elements=("devuser",)))
    assert "devuser" in layer(extra, "base").runs
    assert "devuser" not in layer(extra, "guest").runs
    assert "devuser" not in layer(extra, "datastore").runs
    assert "devuser" in layer(extra, "datastore").visible
    assert all(keys(extra)[n] != keys(default)[n] for n in ("base", "guest", "datastore"))


def test_host_mirrors_reach_base_only(plan, target, no_host_mirrors):
    default = keys(plan(target("debian", "postgresql")))
    no_host_mirrors["DIB_DISTRIBUTION_MIRROR"] = "http://mirror.example/debian"
    p = plan(target("debian", "postgresql"))
    assert layer(p, "base").env["DIB_DISTRIBUTION_MIRROR"] == "http://mirror.example/debian"
    assert "DIB_DISTRIBUTION_MIRROR" not in layer(p, "guest").env
    assert keys(p)["base"] != default["base"]


def test_user_element_dir_changes_only_layers_that_see_it(plan, target, tmp_path, paths):
    """Editing a datastore element's files rebuilds only the datastore layer."""
    import shutil

    from factory import ELEMENTS_DIR
    from factory.elements import search_path

    override = tmp_path / "elements"
    shutil.copytree(ELEMENTS_DIR / "debian-postgresql", override / "debian-postgresql")
    user_paths = search_path(str(override))
    t = target("debian", "postgresql")
    same = plan_stack(t, BUILDER, paths=user_paths)
    assert keys(same) == keys(plan(t))  # identical bytes elsewhere -> same keys
    assert layer(same, "datastore").runs["debian-postgresql"].path == (override / "debian-postgresql").resolve()

    (override / "debian-postgresql" / "post-install.d" / "70-extra").write_text("#!/bin/sh\n")
    edited = plan_stack(t, BUILDER, paths=user_paths)
    assert keys(edited)["base"] == keys(same)["base"]
    assert keys(edited)["guest"] == keys(same)["guest"]
    assert keys(edited)["datastore"] != keys(same)["datastore"]


def test_site_layer_in_plan(plan, target, layers_copy):
    (layers_copy / "25-site-hardening.yaml").write_text(
        textwrap.dedent(
            """
            name: site-hardening
            phases: [extra-data, pre-install, install, post-install, post-root]
            elements: [devuser]
            rerun: [package-installs, pkg-map, install-bin, install-static]
            """
        )
    )
    t = target("debian", "postgresql")
    default = plan(t)
    site = plan(t, layers_dir=layers_copy)
    assert [l.name for l in site.layers] == ["base", "guest", "site-hardening", "datastore"]
    assert keys(site)["base"] == keys(default)["base"]
    assert keys(site)["guest"] == keys(default)["guest"]
    assert keys(site)["datastore"] != keys(default)["datastore"]
    assert "devuser" in layer(site, "site-hardening").runs
    assert layer(site, "datastore").inputs.parent == layer(site, "site-hardening").key
    assert "devuser" not in layer(site, "datastore").runs


def test_fedora_and_ubuntu_plan(plan, target):
    fed = plan(target("fedora", "postgresql"))
    assert "fedora-minimal" in layer(fed, "base").runs
    assert "fedora-postgresql" in layer(fed, "datastore").runs
    ub = plan(target("ubuntu", "mysql"))
    assert "ubuntu-minimal" in layer(ub, "base").runs
    assert "ubuntu-guest" in layer(ub, "guest").runs
    assert "ubuntu-mysql" in layer(ub, "datastore").runs


# --- layer_env / host_inputs directly ---------------------------------------


def test_layer_env_picks_declared_settings(target):
    base, guest, datastore = load_stack(LAYERS_DIR)
    t = target("debian", "postgresql", datastore_version="15", env={"CONTROLLER_IP": "10.0.0.1"})
    assert layer_env(base, t, {}) == {
        "ARCH": "amd64",
        "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive, OpenStack",
        "DIB_RELEASE": "bookworm",
    }
    g = layer_env(guest, t, {})
    assert g["CONTROLLER_IP"] == "10.0.0.1"
    assert g["ESCAPED_GUEST_LOGDIR"] == r"\/var\/log\/trove"
    assert "SERVICE_TYPE" not in g
    d = layer_env(datastore, t, {})
    assert d["SERVICE_TYPE"] == "postgresql" and d["DATASTORE_VERSION"] == "15"
    assert "CONTROLLER_IP" not in d
    assert list(d) == sorted(d)


def test_host_inputs_skips_defaults_and_non_paths(target, tmp_path):
    f = tmp_path / "keyring.gpg"
    f.write_bytes(b"k")
    t = target("debian", "postgresql", env={"DIB_APT_KEYRING": str(f)})
    # GUEST_LOGDIR here is the default's slot, not set by the user: never a host input
    env = {"GUEST_LOGDIR": str(tmp_path), "DIB_APT_KEYRING": str(f), "X": "relative/path", "Y": str(tmp_path / "nope"), "Z": "/"}
    out = host_inputs(env, t)
    assert list(out) == [str(f)]
    assert out[str(f)].startswith("file:")


def test_guest_logdir_is_not_a_host_input(plan, target, tmp_path):
    logdir = tmp_path / "var-log-trove"
    logdir.mkdir()
    t = target("debian", "postgresql", env={"GUEST_LOGDIR": str(logdir)})
    first = keys(plan(t))
    (logdir / "guest-agent.log").write_text("a log line on the build host\n")
    assert keys(plan(t)) == first


def test_site_layer_via_factory_layers_path(plan, target, tmp_path, monkeypatch):
    site = tmp_path / "site-layers"
    site.mkdir()
    (site / "25-site-hardening.yaml").write_text("name: site-hardening\nphases: [install]\nelements: [devuser]\n")
    t = target("debian", "redis")
    default = keys(plan(t))
    monkeypatch.setenv("FACTORY_LAYERS_PATH", str(site))
    p = plan(t)
    assert [l.name for l in p.layers] == ["base", "guest", "site-hardening", "datastore"]
    assert keys(p)["base"] == default["base"] and keys(p)["guest"] == default["guest"]
    assert keys(p)["datastore"] != default["datastore"]


def test_engine_code_enters_every_key(plan, target, monkeypatch):
    t = target("debian", "postgresql")
    default = keys(plan(t))
    monkeypatch.setattr(plan_mod, "engine_hash", lambda: "0" * 64)
    changed = keys(plan(t))
    assert all(changed[n] != default[n] for n in default)


def test_secret_values_never_appear_in_key_inputs(monkeypatch):
    from factory.target import Target
    from factory.plan import plan_stack

    monkeypatch.setattr("factory.plan.host_mirrors", lambda distro: {})
    t = Target(distro="debian", datastore="postgresql", release="bookworm", env=(("OS_PASSWORD", "hunter2-secret"),))
    plan = plan_stack(t, "sha256:test")
    for layer in plan.layers:
        assert "hunter2-secret" not in layer.inputs.canonical()
        assert layer.env["OS_PASSWORD"] == "hunter2-secret"  # the element still gets it
    other = plan_stack(Target(distro="debian", datastore="postgresql", release="bookworm", env=(("OS_PASSWORD", "other"),)), "sha256:test")
    assert other.layers[0].key != plan.layers[0].key


def test_datastore_pkg_location_path_does_not_enter_the_key(plan, target, tmp_path):
    one, two = tmp_path / "a.deb", tmp_path / "elsewhere" / "b.deb"
    two.parent.mkdir()
    one.write_bytes(b"same bytes")
    two.write_bytes(b"same bytes")
    k1 = keys(plan(target("debian", "postgresql", env={"DATASTORE_PKG_LOCATION": str(one)})))
    k2 = keys(plan(target("debian", "postgresql", env={"DATASTORE_PKG_LOCATION": str(two)})))
    assert k1 == k2


def _saved_image(path, content: bytes) -> None:
    """A file shaped as `docker save` writes one (validation opens it)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in (("manifest.json", b"[]"), ("layer.tar", content)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_container_mode_swaps_only_the_datastore_elements(plan, target, tmp_path):
    archive = tmp_path / "postgres.tar"
    _saved_image(archive, b"one")
    env = {"DATASTORE_IMAGE": "postgres:16", "DATASTORE_IMAGE_ARCHIVE": str(archive)}
    native = plan(target("debian", "postgresql", env=env))
    container = plan(target("debian", "postgresql", datastore_mode="container", env=env))
    assert "container-datastore" in layer(container, "datastore").runs
    assert "debian-postgresql" not in layer(container, "datastore").runs
    assert keys(native)["guest"] == keys(container)["guest"]
    assert layer(container, "datastore").env["DATASTORE_MODE"] == "container"
    _saved_image(archive, b"two")  # a new image archive: a new datastore layer, nothing else
    again = plan(target("debian", "postgresql", datastore_mode="container", env=env))
    assert keys(again)["guest"] == keys(container)["guest"]
    assert keys(again)["datastore"] != keys(container)["datastore"]


def test_agent_source_reaches_the_guest_layer_only(plan, target):
    default, older = plan(target()), plan(target(agent_source="pypi:25.1.0"))
    assert keys(default)["base"] == keys(older)["base"]
    assert keys(default)["guest"] != keys(older)["guest"]
    assert layer(older, "guest").env["TROVE_AGENT_VERSION"] == "25.1.0"
    assert "TROVE_AGENT_VERSION" not in layer(older, "base").env


def test_agent_checkout_enters_the_guest_key_by_content(plan, target, tmp_path):
    checkout = tmp_path / "trove"
    checkout.mkdir()
    (checkout / "setup.cfg").write_text("[metadata]\nname = trove\n")
    before = plan(target(agent_source=f"path:{checkout}"))
    assert layer(before, "guest").env["PATH_TROVE"] == str(checkout)
    os.utime(checkout / "setup.cfg", (1, 1))
    assert keys(plan(target(agent_source=f"path:{checkout}"))) == keys(before)
    (checkout / "setup.cfg").write_text("[metadata]\nname = trove\nversion = 99\n")
    after = plan(target(agent_source=f"path:{checkout}"))
    assert keys(after)["base"] == keys(before)["base"]
    assert keys(after)["guest"] != keys(before)["guest"]


def test_build_host_ssh_keys_only_reach_a_runtime_agent(plan, target, tmp_path):
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    (ssh / "id_ed25519").write_text("not a real key")
    env = {"SSH_DIR": str(ssh), "HOST_SCP_USERNAME": "stack", "CONTROLLER_IP": "10.0.0.1", "PATH_TROVE": "/opt/stack/trove"}
    dev = plan(target(agent_source="runtime", env=env))
    assert layer(dev, "guest").env["TROVE_AGENT_SOURCE"] == "runtime"
    assert str(ssh) in layer(dev, "guest").host_inputs  # staged by extra-data.d for the dev agent only
    baked = plan(target(env={k: v for k, v in env.items() if k != "PATH_TROVE"}))
    assert layer(baked, "guest").env["TROVE_AGENT_SOURCE"] == "pypi"


def test_select_keeps_the_named_targets_in_their_order(target):
    from factory.errors import UsageError
    from factory.plan import select

    targets = [target("debian", "postgresql"), target("debian", "mariadb"), target("ubuntu", "postgresql")]
    assert select(targets, []) == targets
    assert select(targets, ["ubuntu-noble-postgresql", "debian-bookworm-postgresql"]) == [targets[0], targets[2]]
    with pytest.raises(UsageError, match="--target debian-sid-x: no such target; the targets are debian-bookworm-postgresql"):
        select(targets, ["debian-sid-x"])
