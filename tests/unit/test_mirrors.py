"""Default mirrors taken from the host's apt configuration (a fake apt dir here)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from factory.mirrors import host_mirrors

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def apt_dir(tmp_path: Path, sources_list: str | None = None, **parts: str) -> Path:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (d / "sources.list").write_text(textwrap.dedent(sources_list))
    for name, text in parts.items():
        (d / "sources.list.d" / name.replace("__", ".")).write_text(textwrap.dedent(text))
    return d


def test_deb822_sources(tmp_path):
    d = apt_dir(tmp_path, debian__sources=DEB822)
    assert host_mirrors("debian", apt_dir=d) == {
        "DIB_DISTRIBUTION_MIRROR": "http://mirror.example/debian",
        "DIB_DEBIAN_SECURITY_MIRROR": "http://mirror.example/debian-security",
    }


def test_deb822_disabled_and_deb_src_only_are_ignored(tmp_path):
    d = apt_dir(
        tmp_path,
        a__sources="""\
            Types: deb
            URIs: http://disabled.example/debian
            Suites: bookworm
            Components: main
            Enabled: no

            Types: deb-src
            URIs: http://src.example/debian
            Suites: bookworm
            Components: main
            """,
        b__sources="""\
            Types: deb deb-src
            URIs: http://mirror.example/debian
            Suites: bookworm
            Components: main
            """,
    )
    assert host_mirrors("debian", apt_dir=d) == {"DIB_DISTRIBUTION_MIRROR": "http://mirror.example/debian"}


def test_legacy_sources_list_with_options(tmp_path):
    d = apt_dir(
        tmp_path,
        sources_list="""\
            # a comment line: deb http://commented.example/debian bookworm main
            deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main
            deb-src http://src.example/debian bookworm main
            deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian-security/ bookworm-security main
            """,
    )
    assert host_mirrors("debian", apt_dir=d) == {
        "DIB_DISTRIBUTION_MIRROR": "http://mirror.example/debian",
        "DIB_DEBIAN_SECURITY_MIRROR": "http://mirror.example/debian-security",
    }


def test_legacy_list_file_in_sources_list_d(tmp_path):
    d = apt_dir(tmp_path, local__list="deb http://proxy.example:3142/debian bookworm main\n")
    assert host_mirrors("debian", apt_dir=d) == {"DIB_DISTRIBUTION_MIRROR": "http://proxy.example:3142/debian"}


def test_security_suite_under_main_path_is_not_the_distribution_mirror(tmp_path):
    d = apt_dir(
        tmp_path,
        sources_list="""\
            deb http://security.example/debian bookworm-security main
            deb http://mirror.example/debian bookworm main
            """,
    )
    assert host_mirrors("debian", apt_dir=d)["DIB_DISTRIBUTION_MIRROR"] == "http://mirror.example/debian"


def test_ubuntu_gets_nothing_from_debian_config(tmp_path):
    d = apt_dir(tmp_path, sources_list="deb http://mirror.example/debian bookworm main\n", debian__sources=DEB822)
    assert host_mirrors("ubuntu", apt_dir=d) == {}
    assert host_mirrors("fedora", apt_dir=d) == {}


def test_ubuntu_mirror_from_ubuntu_config(tmp_path):
    d = apt_dir(
        tmp_path,
        ubuntu__sources="""\
            Types: deb
            URIs: http://mirror.example/ubuntu/
            Suites: noble noble-updates
            Components: main universe

            Types: deb
            URIs: http://security-mirror.example/ubuntu/
            Suites: noble-security
            Components: main universe
            """,
    )
    assert host_mirrors("ubuntu", apt_dir=d) == {"DIB_DISTRIBUTION_MIRROR": "http://mirror.example/ubuntu"}
    assert host_mirrors("debian", apt_dir=d) == {}


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_no_apt_config(tmp_path, layout):
    d = tmp_path / "apt"
    if layout == "empty":
        (d / "sources.list.d").mkdir(parents=True)
    assert host_mirrors("debian", apt_dir=d) == {}
