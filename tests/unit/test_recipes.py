"""Datastore image recipes and their keys (pure), and --datastore-image parsing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from factory.containers import parse_source
from factory.engine.dsimage import mmdebstrap_command
from factory.errors import FactoryError
from factory.recipes import DATASTORES_DIR, apt_sources, known, load_recipe, plan_image

SOURCES = ("deb http://mirror.example/debian bookworm main",)


def test_recipes_name_trove_default_images_and_the_archive_version():
    assert {"postgresql", "mariadb", "mysql"} <= set(known())
    pg = load_recipe("postgresql", "bookworm")
    assert (pg.ref, pg.packages) == ("postgres:15", ("postgresql-15", "locales", "tzdata"))
    assert "PATH=/usr/lib/postgresql/15/bin:" in pg.config["Env"][0]
    assert load_recipe("mariadb", "noble").ref == "mariadb:10.11"
    assert [f.name for f in load_recipe("mariadb", "bookworm").folders] == ["mysql-family", "mariadb"]


def test_a_release_without_the_datastore_is_one_line():
    with pytest.raises(FactoryError, match="bookworm's archive ships no mysql") as e:
        load_recipe("mysql", "bookworm")
    assert "\n" not in str(e.value)
    with pytest.raises(FactoryError, match="no recipe builds a redis image"):
        load_recipe("redis", "bookworm")


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "datastores"
    shutil.copytree(DATASTORES_DIR, root)
    return root


def test_key_follows_recipe_tree_release_mirror_and_packages(tmp_path):
    root = _copy(tmp_path)
    key = plan_image(load_recipe("postgresql", "bookworm", root), "debian", "bookworm", "amd64", SOURCES).key
    assert key == plan_image(load_recipe("postgresql", "bookworm", root), "debian", "bookworm", "amd64", SOURCES).key
    others = {
        plan_image(load_recipe("postgresql", "trixie", root), "debian", "trixie", "amd64", SOURCES).key,
        plan_image(load_recipe("postgresql", "bookworm", root), "debian", "bookworm", "amd64",
                   ("deb http://other.example/debian bookworm main",)).key,
        plan_image(load_recipe("postgresql", "bookworm", root), "debian", "bookworm", "arm64", SOURCES).key,
    }
    (root / "postgresql" / "bin" / "docker-entrypoint.sh").write_text("#!/bin/sh\nexec \"$@\"\n")
    others.add(plan_image(load_recipe("postgresql", "bookworm", root), "debian", "bookworm", "amd64", SOURCES).key)
    assert key not in others and len(others) == 4


def test_an_included_folder_is_in_the_key(tmp_path):
    root = _copy(tmp_path)
    before = plan_image(load_recipe("mariadb", "bookworm", root), "debian", "bookworm", "amd64", SOURCES).key
    (root / "mysql-family" / "setup.sh").write_text("#!/bin/sh\ntrue\n")
    assert plan_image(load_recipe("mariadb", "bookworm", root), "debian", "bookworm", "amd64", SOURCES).key != before


def test_apt_sources_leave_out_lines_whose_mirror_is_unknown():
    templates = ["deb {DIB_DISTRIBUTION_MIRROR} {release} main", "deb {DIB_DEBIAN_SECURITY_MIRROR} {release}-security main"]
    assert apt_sources(templates, {"DIB_DISTRIBUTION_MIRROR": "http://m/debian"}, "bookworm") == ("deb http://m/debian bookworm main",)
    with pytest.raises(FactoryError, match="no debian archive mirror"):
        plan_image(load_recipe("postgresql", "bookworm"), "debian", "bookworm", "amd64", ())


def test_mmdebstrap_runs_the_recipe_in_the_root():
    plan = plan_image(load_recipe("mariadb", "bookworm"), "debian", "bookworm", "amd64", SOURCES)
    cmd = mmdebstrap_command(plan, Path("/w/root.tar"), None)
    assert cmd[-3:] == ["bookworm", "/w/root.tar", SOURCES[0]]
    assert "--include=mariadb-server,mariadb-client,tzdata" in cmd
    hooks = [c for c in cmd if c.startswith("--customize-hook=")]
    assert any("healthcheck.sh" in h and h.endswith(" /usr/local/bin") for h in hooks)
    assert sum("VERSION=10.11 sh /tmp/setup.sh" in h for h in hooks) == 1


@pytest.mark.parametrize("text,expected", [
    (None, ("", "")), ("distro", ("distro", "")), ("archive:/srv/pg.tar", ("archive", "/srv/pg.tar")),
    ("postgres:16", ("registry", "postgres:16")), ("registry.local:5000/db/postgres:16", ("registry", "registry.local:5000/db/postgres:16")),
])
def test_datastore_image_sources(text, expected):
    assert parse_source(text) == expected


@pytest.mark.parametrize("text", ["archive:", "not an image"])
def test_bad_datastore_image_is_one_line(text):
    with pytest.raises(FactoryError, match="--datastore-image"):
        parse_source(text)
