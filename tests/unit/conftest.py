"""Shared fixtures for the fast unit tests: no container engine, no network.

Everything here reads the repository's real `layers/` and `elements/` plus
DIB's bundled elements, or builds small fake trees under tmp_path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from factory import LAYERS_DIR
from factory.catalog import catalog
from factory.target import Target
from factory.validate import validate
from factory.elements import search_path


@pytest.fixture(autouse=True)
def no_user_paths(monkeypatch):
    """The caller's ELEMENTS_PATH / FACTORY_LAYERS_PATH must not leak into the tests."""
    monkeypatch.delenv("ELEMENTS_PATH", raising=False)
    monkeypatch.delenv("FACTORY_LAYERS_PATH", raising=False)


@pytest.fixture(scope="session")
def paths() -> list[Path]:
    """The element search path without any ELEMENTS_PATH from the caller's shell."""
    return search_path("")


@pytest.fixture(scope="session")
def cat(paths):
    return catalog(paths, LAYERS_DIR)


@pytest.fixture
def target(cat):
    """Build a validated Target: target(distro, datastore, **fields); native
    datastore mode unless given (most planning tests are about those elements)."""

    def make(distro: str = "debian", datastore: str = "postgresql", **kw) -> Target:
        kw.setdefault("datastore_mode", "native")
        env = kw.pop("env", None)
        if isinstance(env, dict):
            kw["env"] = tuple(sorted(env.items()))
        return validate(Target(distro=distro, datastore=datastore, **kw), cat)

    return make


@pytest.fixture
def layers_copy(tmp_path) -> Path:
    """A private copy of the repository's layers/ that a test may add files to."""
    dest = tmp_path / "layers"
    shutil.copytree(LAYERS_DIR, dest)
    return dest
