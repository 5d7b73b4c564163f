"""Targets: flags, factory.yaml (defaults, targets, matrix), validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from factory.catalog import catalog
from factory.config import load_targets, read_config_file
from factory.target import Flags, Target, escape_for_sed
from factory.target_settings import FORMATS, parse_env, split_formats
from factory.validate import validate
from factory.elements import dib_elements_dir, search_path
from factory.errors import FactoryError


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "factory.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- flags -> Target -------------------------------------------------------


def test_flags_alone_make_one_target():
    flags = Flags(
        distro="debian",
        release="trixie",
        arch="arm64",
        datastore="postgresql",
        datastore_version="16",
        elements=["devuser"],
        packages=["vim,curl", "htop"],
        env=["GUEST_USERNAME=alice", "FOO=a=b"],
        image_size="4G",
        formats=["qcow2,RAW", "qcow2"],
        output="images",
    )
    (t,) = load_targets(flags)
    assert t == Target(
        distro="debian",
        datastore="postgresql",
        release="trixie",
        arch="arm64",
        datastore_version="16",
        elements=("devuser",),
        packages=("vim", "curl", "htop"),
        env=(("FOO", "a=b"), ("GUEST_USERNAME", "alice")),
        image_size="4G",
        formats=("qcow2", "raw"),
        output="images",
    )
    assert t.name == "debian-trixie-postgresql"


def test_flags_defaults():
    (t,) = load_targets(Flags(distro="ubuntu", datastore="mysql"))
    assert t.release is None  # filled in by validate()
    assert t.arch == "amd64"
    assert t.formats == ("qcow2",)
    assert t.env == ()


@pytest.mark.parametrize("flags", [Flags(datastore="postgresql"), Flags()])
def test_missing_distro_says_which_flag(flags):
    with pytest.raises(FactoryError, match="--distro"):
        load_targets(flags)


def test_container_mode_takes_no_datastore_or_several():
    """Upstream's single-image layout: the generic guest, or several images in one."""
    cat = catalog(search_path())
    generic = validate(load_targets(Flags(distro="ubuntu"))[0], cat)
    assert (generic.datastores, generic.name) == ((), "ubuntu-noble-guest")
    both = validate(load_targets(Flags(distro="debian", datastore="postgresql,mariadb"))[0], cat)
    assert (both.datastores, both.name) == (("postgresql", "mariadb"), "debian-bookworm-postgresql-mariadb")


@pytest.mark.parametrize("flags, message", [
    (Flags(distro="debian", agent_source="pypi:13.0.1"), "a native image carries one datastore"),
    (Flags(distro="debian", datastore="postgresql,mariadb", datastore_version="15"), "--datastore-version names one"),
    (Flags(distro="debian", datastore="postgresql,nosuch"), "unknown datastore 'nosuch'"),
])
def test_several_or_no_datastores_refused_where_they_cannot_work(flags, message):
    with pytest.raises(FactoryError, match=message):
        validate(load_targets(flags)[0], catalog(search_path()))


# --- factory.yaml ----------------------------------------------------------


def test_yaml_matrix_expands_as_product_with_defaults(tmp_path):
    path = write_yaml(
        tmp_path,
        """
        defaults:
          distro: debian
          release: bookworm
          format: [qcow2, raw]
        matrix:
          datastore: [postgresql, mariadb]
          arch: [amd64, arm64]
        """,
    )
    targets = load_targets(Flags(config=path))
    combos = {(t.datastore, t.arch) for t in targets}
    assert len(targets) == 4
    assert combos == {("postgresql", "amd64"), ("postgresql", "arm64"), ("mariadb", "amd64"), ("mariadb", "arm64")}
    assert all(t.distro == "debian" and t.release == "bookworm" for t in targets)
    assert all(t.formats == ("qcow2", "raw") for t in targets)


def test_yaml_datastore_image_and_several_datastores_in_one_guest(tmp_path):
    path = write_yaml(
        tmp_path,
        """
        defaults: {distro: debian, datastore_image: distro}
        targets:
          - {datastore: postgresql}
          - {datastore: [postgresql, mariadb], datastore_image: null}
        """,
    )
    one, both = load_targets(Flags(config=path))
    assert (one.datastore, one.datastore_image) == ("postgresql", "distro")
    assert (both.datastores, both.datastore_image) == (("postgresql", "mariadb"), None)
    assert load_targets(Flags(config=path, datastore_image="postgres:16"))[0].datastore_image == "postgres:16"


def test_yaml_targets_and_matrix_together(tmp_path):
    path = write_yaml(
        tmp_path,
        """
        defaults: {distro: debian}
        targets:
          - {distro: ubuntu, datastore: mysql, release: jammy}
        matrix:
          datastore: [redis]
        """,
    )
    targets = load_targets(Flags(config=path))
    assert [(t.distro, t.datastore, t.release) for t in targets] == [
        ("ubuntu", "mysql", "jammy"),  # a target's value beats the defaults
        ("debian", "redis", None),
    ]


def test_flags_override_file_values_and_env_merges(tmp_path):
    path = write_yaml(
        tmp_path,
        """
        defaults:
          distro: debian
          release: bookworm
          env: {A: 1, B: from-defaults}
        targets:
          - datastore: postgresql
            env: {B: from-target, C: target}
          - datastore: mariadb
            release: trixie
        """,
    )
    flags = Flags(config=path, release="trixie", arch="arm64", env=["C=flag", "D=flag"])
    pg, maria = load_targets(flags)
    assert pg.release == maria.release == "trixie"
    assert pg.arch == maria.arch == "arm64"
    assert pg.env_dict() == {"A": "1", "B": "from-target", "C": "flag", "D": "flag"}
    assert maria.env_dict() == {"A": "1", "B": "from-defaults", "C": "flag", "D": "flag"}
    # env stays sorted so that equal settings make equal targets
    assert list(pg.env) == sorted(pg.env)


def test_file_without_targets_uses_defaults_and_flags(tmp_path):
    path = write_yaml(tmp_path, "defaults: {distro: fedora, release: 41}\n")
    (t,) = load_targets(Flags(config=path, datastore="postgresql"))
    assert (t.distro, t.release, t.datastore) == ("fedora", "41", "postgresql")


@pytest.mark.parametrize(
    "yaml_line, var, value",
    [
        ("guest_username: x", "GUEST_USERNAME", "x"),
        ("guest-username: x", "GUEST_USERNAME", "x"),
        ("GUEST_LOGDIR: /srv/log", "GUEST_LOGDIR", "/srv/log"),
        ("controller_ip: 10.0.0.1", "CONTROLLER_IP", "10.0.0.1"),
        ("dib_cloud_init_datasources: OpenStack", "DIB_CLOUD_INIT_DATASOURCES", "OpenStack"),
    ],
)
def test_seed_settings_in_yaml_become_env(tmp_path, yaml_line, var, value):
    path = write_yaml(tmp_path, f"defaults:\n  distro: debian\n  datastore: redis\n  {yaml_line}\n")
    (t,) = load_targets(Flags(config=path))
    assert t.env_dict() == {var: value}
    assert t.element_env()[var] == value


def test_seed_setting_in_yaml_is_overridden_by_env_flag(tmp_path):
    path = write_yaml(tmp_path, "defaults: {distro: debian, datastore: redis, guest_username: x}\n")
    (t,) = load_targets(Flags(config=path, env=["GUEST_USERNAME=y"]))
    assert t.env_dict() == {"GUEST_USERNAME": "y"}


def test_yaml_unknown_setting_lists_known_ones(tmp_path):
    path = write_yaml(tmp_path, "defaults: {distro: debian, colour: blue}\n")
    with pytest.raises(FactoryError) as e:
        load_targets(Flags(config=path))
    msg = str(e.value)
    assert "colour" in msg and "datastore" in msg and "release" in msg


@pytest.mark.parametrize(
    "text, needle",
    [
        ("defaults: [a\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("default: {distro: debian}\n", "unknown top-level"),
        ("matrix: {distro: debian}\n", "list of values"),
        ("defaults: {env: [A=1]}\n", "'env' must be a mapping"),
    ],
)
def test_bad_config_files(tmp_path, text, needle):
    path = write_yaml(tmp_path, text)
    with pytest.raises(FactoryError, match=needle):
        read_config_file(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(FactoryError, match="not found"):
        load_targets(Flags(config=tmp_path / "nope.yaml", distro="debian", datastore="redis"))


# --- --env parsing ---------------------------------------------------------


def test_parse_env_values():
    assert parse_env(["A=1", "B=x=y", "C=", "A=2"]) == {"A": "2", "B": "x=y", "C": ""}


def test_env_without_equals_says_how_to_write_it():
    with pytest.raises(FactoryError) as e:
        parse_env(["GUEST_USERNAME"])
    msg = str(e.value)
    assert "GUEST_USERNAME" in msg and "KEY=VALUE" in msg and "--env" in msg


@pytest.mark.parametrize("item", ["1ABC=x", "MY-VAR=x", "=x", "A B=x"])
def test_env_bad_name(item):
    with pytest.raises(FactoryError, match="not a valid variable name"):
        parse_env([item])


def test_env_flag_errors_surface_through_load_targets():
    with pytest.raises(FactoryError, match="KEY=VALUE"):
        load_targets(Flags(distro="debian", datastore="redis", env=["oops"]))


def test_split_formats():
    assert split_formats(["qcow2, RAW", "raw,,vmdk"]) == ("qcow2", "raw", "vmdk")


# --- catalog ---------------------------------------------------------------


def test_catalog_from_real_elements(cat):
    assert set(cat.distros) == {"debian", "ubuntu", "fedora"}
    assert cat.distros["debian"] == ("cassandra", "couchbase", "mariadb", "mongodb", "percona", "postgresql", "redis")
    assert cat.distros["ubuntu"] == ("cassandra", "couchbase", "mariadb", "mongodb", "mysql", "percona", "postgresql", "redis")
    assert cat.distros["fedora"] == ("postgresql",)
    assert cat.default_releases["debian"] == "bookworm"


def test_catalog_ignores_dib_helper_elements(cat):
    dib = dib_elements_dir()
    # They exist in DIB and look like "<distro>-<something>" ...
    assert (dib / "debian-systemd").is_dir() and (dib / "ubuntu-common").is_dir()
    # ... but are not datastores (nor is the guest element, nor the OS element).
    for distro, stores in cat.distros.items():
        for helper in ("systemd", "common", "minimal", "guest"):
            assert helper not in stores, (distro, helper)
    # DIB's other <x>-minimal elements are not distros either.
    assert "centos" not in cat.distros and "opensuse" not in cat.distros


def test_extra_element_dir_adds_datastore(tmp_path, cat):
    (tmp_path / "debian-scylla").mkdir()
    (tmp_path / "debian-scylla" / "element-deps").write_text("package-installs\n")
    assert "scylla" not in cat.distros["debian"]
    with pytest.raises(FactoryError):
        validate(Target("debian", "scylla"), cat)

    extended = catalog(search_path(str(tmp_path)))
    assert "scylla" in extended.distros["debian"]
    assert "scylla" not in extended.distros["ubuntu"]
    assert validate(Target("debian", "cassandra"), extended).release == "bookworm"


# --- validate --------------------------------------------------------------


def problems(target: Target, cat) -> list[str]:
    with pytest.raises(FactoryError) as e:
        validate(target, cat)
    return str(e.value).splitlines()


def test_unknown_distro_lists_valid_distros(cat):
    (line,) = problems(Target("gentoo", "postgresql"), cat)
    assert "gentoo" in line
    listed = line.split("valid distros:")[1]
    assert {d.strip() for d in listed.split(",")} == set(cat.distros) == {"debian", "ubuntu", "fedora"}


def test_unknown_datastore_lists_valid_ones_for_that_distro(cat):
    (line,) = problems(Target("debian", "mysql"), cat)  # mysql exists for ubuntu only
    assert "mysql" in line and "debian" in line
    listed = {s.strip() for s in line.split("valid datastores:")[1].split(",")}
    assert listed == set(cat.distros["debian"]) >= {"mariadb", "postgresql", "redis"}
    # the same name is fine on ubuntu
    assert validate(Target("ubuntu", "mysql"), cat).release == "noble"


@pytest.mark.parametrize("distro, release", [("debian", "bookworm"), ("ubuntu", "noble"), ("fedora", "41")])
def test_default_release_filled_in(cat, distro, release):
    assert validate(Target(distro, "postgresql"), cat).release == release


def test_given_release_kept(cat):
    assert validate(Target("debian", "postgresql", release="trixie"), cat).release == "trixie"


def test_bad_format(cat):
    (line,) = problems(Target("debian", "redis", formats=("qcow2", "iso")), cat)
    assert "iso" in line
    assert all(f in line for f in FORMATS)


def test_no_format(cat):
    (line,) = problems(Target("debian", "redis", formats=()), cat)
    assert "--format" in line


def test_bad_arch_and_size(cat):
    lines = problems(Target("debian", "redis", arch="s390x", image_size="big"), cat)
    assert len(lines) == 2
    assert any("s390x" in l for l in lines) and any("big" in l for l in lines)


@pytest.mark.parametrize("ip", ["10.0.0.1", "fd00::1"])
def test_controller_ip_good(cat, ip):
    validate(Target("debian", "redis", env=(("CONTROLLER_IP", ip),)), cat)


@pytest.mark.parametrize("ip", ["10.0.0.300", "controller", "10.0.0"])
def test_controller_ip_bad(cat, ip):
    (line,) = problems(Target("debian", "redis", env=(("CONTROLLER_IP", ip),)), cat)
    assert "CONTROLLER_IP" in line and ip in line


def test_datastore_pkg_location_must_exist(cat, tmp_path):
    missing = tmp_path / "pkgs.tar"
    (line,) = problems(Target("debian", "redis", env=(("DATASTORE_PKG_LOCATION", str(missing)),)), cat)
    assert "DATASTORE_PKG_LOCATION" in line and str(missing) in line
    missing.write_bytes(b"x")
    validate(Target("debian", "redis", env=(("DATASTORE_PKG_LOCATION", str(missing)),)), cat)


@pytest.mark.parametrize("var", ["ESCAPED_GUEST_LOGDIR", "ESCAPED_PATH_TROVE"])
def test_escaped_variables_are_refused(cat, var):
    (line,) = problems(Target("debian", "redis", env=((var, "\\/x"),)), cat)
    assert var in line
    assert f"set {var[len('ESCAPED_'):]} instead" in line


def test_several_problems_one_line_each(cat, tmp_path):
    t = Target(
        "debian",
        "mysql",
        formats=("iso",),
        env=(
            ("CONTROLLER_IP", "nope"),
            ("DATASTORE_PKG_LOCATION", str(tmp_path / "missing")),
            ("ESCAPED_GUEST_LOGDIR", "x"),
        ),
    )
    lines = problems(t, cat)
    assert len(lines) == 5
    for needle in ("mysql", "iso", "CONTROLLER_IP", "DATASTORE_PKG_LOCATION", "ESCAPED_GUEST_LOGDIR"):
        assert sum(needle in l for l in lines) >= 1, needle


# --- element_env -----------------------------------------------------------


def test_element_env_defaults_and_derived(target):
    env = target("debian", "postgresql").element_env()
    assert env["GUEST_USERNAME"] == "trove"
    assert env["DIB_CLOUD_INIT_DATASOURCES"] == "ConfigDrive, OpenStack"
    assert env["GUEST_LOGDIR"] == "/var/log/trove"
    assert env["ESCAPED_GUEST_LOGDIR"] == r"\/var\/log\/trove"
    assert env["SERVICE_TYPE"] == "postgresql"
    assert env["DIB_RELEASE"] == "bookworm"
    assert "DATASTORE_VERSION" not in env


def test_element_env_follows_user_settings(target):
    t = target(
        "ubuntu",
        "mysql",
        datastore_version="8.0",
        env={"GUEST_LOGDIR": "/srv/trove/logs", "GUEST_USERNAME": "ubuntu", "PATH_TROVE": "/"},
    )
    env = t.element_env()
    assert env["GUEST_USERNAME"] == "ubuntu"
    assert env["ESCAPED_GUEST_LOGDIR"] == r"\/srv\/trove\/logs"
    assert env["ESCAPED_PATH_TROVE"] == r"\/"
    assert env["SERVICE_TYPE"] == "mysql"
    assert env["DATASTORE_VERSION"] == "8.0"
    assert env["DIB_RELEASE"] == "noble"


def test_escape_for_sed():
    assert escape_for_sed("/a/b") == r"\/a\/b"
    assert escape_for_sed("a&b") == r"a\&b"
    assert escape_for_sed("a\\b") == r"a\\b"


def test_bad_agent_source_and_mode_each_get_a_line(cat):
    lines = problems(Target("debian", "postgresql", agent_source="pip:1", datastore_mode="vm"), cat)
    assert len(lines) == 2
    assert "pypi[:VERSION], path:DIR, git:URL[@REF] or runtime" in lines[0]
    assert "--datastore-mode 'vm'" in lines[1] and "native or container" in lines[1]


def test_runtime_agent_names_the_settings_it_lacks(cat):
    (line,) = problems(Target("debian", "postgresql", agent_source="runtime", env=(("CONTROLLER_IP", "10.0.0.1"),)), cat)
    assert "HOST_SCP_USERNAME, PATH_TROVE, SSH_DIR" in line


def test_agent_path_must_be_a_folder_here(cat, tmp_path):
    (line,) = problems(Target("debian", "postgresql", agent_source=f"path:{tmp_path}/nope"), cat)
    assert "no such folder" in line


def test_default_mode_follows_the_agent_release():
    assert Target("debian", "postgresql").mode == "container"
    assert Target("debian", "postgresql", agent_source="pypi:13.0.0").mode == "native"
    assert Target("debian", "postgresql", datastore_mode="native").mode == "native"


def test_a_full_disk_is_one_line_that_says_what_to_do():
    import errno

    from factory.cli_errors import host_error as _host_error

    line = _host_error(OSError(errno.ENOSPC, "No space left on device", "/out/x.qcow2.sha256"))
    assert "no space left" in line and "/out/x.qcow2.sha256" in line and "free space" in line
    assert "\n" not in line
