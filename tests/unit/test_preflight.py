"""The mirror preflight: a build that cannot reach its mirror stops at once."""

import socket
import time

import pytest

from factory.target import Target
from factory.errors import FactoryError
from factory.preflight import check_mirror, mirror_urls
from tests.conftest import closed_mirror_repos


def test_fedora_urls_come_from_dibs_repo_files():
    urls, setting = mirror_urls(Target(distro="fedora", datastore="postgresql", release="41"))
    assert setting == "DIB_YUM_MINIMAL_BOOTSTRAP_REPOS"
    assert urls and all(u.startswith("http") for u in urls)


def test_user_repo_folder_replaces_dibs(tmp_path):
    (tmp_path / "local.repo").write_text("[fedora]\nbaseurl=http://mirror.example:8080/fedora/$releasever/\n")
    t = Target(distro="fedora", datastore="postgresql", release="41", env=(("DIB_YUM_MINIMAL_BOOTSTRAP_REPOS", str(tmp_path)),))
    assert mirror_urls(t)[0] == ["http://mirror.example:8080/fedora/$releasever/"]


def test_unreachable_mirror_fails_fast_naming_the_setting(tmp_path):
    closed_mirror_repos(tmp_path)
    t = Target(distro="fedora", datastore="postgresql", release="41", env=(("DIB_YUM_MINIMAL_BOOTSTRAP_REPOS", str(tmp_path)),))
    started = time.monotonic()
    with pytest.raises(FactoryError) as e:
        check_mirror(t)
    assert time.monotonic() - started < 5
    assert "DIB_YUM_MINIMAL_BOOTSTRAP_REPOS" in str(e.value) and "\n" not in str(e.value)


def test_reachable_mirror_passes(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        t = Target(distro="debian", datastore="postgresql", release="bookworm",
                   env=(("DIB_DISTRIBUTION_MIRROR", f"http://127.0.0.1:{port}/debian"),))
        check_mirror(t)
    finally:
        s.close()
