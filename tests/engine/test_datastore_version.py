"""--datastore-version on a native datastore: the distro archive ships one
version per release; asking for another fails in the datastore layer with
one line that names the version it has."""

from __future__ import annotations

import pytest

from tests.conftest import NATIVE_AGENT, factory

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_a_version_the_archive_does_not_ship_is_refused_clearly(builder, tmp_path):
    run = factory("build", "--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT,
                  "--datastore-version", "13", "--format", "tar", "--output", str(tmp_path))
    assert run.returncode == 2
    assert "this distro release ships postgresql 15" in run.stderr and "--datastore-version 15" in run.stderr
    assert not list(tmp_path.iterdir())
