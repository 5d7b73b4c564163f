"""Every class of bad input, on every command, is refused the way a user
needs it: exit 2, an `error:` line saying what to pass instead, no
traceback, and nothing written (no work folder, no record, no log, no
output). How fast each is refused is measured by `python -m tests.bad_inputs`
(under 2 s on an idle host), not asserted here: a loaded CI host is no
measure. The bound below only tells a refusal from a build that started.
The table is tests/bad_inputs.py."""

from __future__ import annotations

import pytest

from tests.bad_inputs import CASES, left_behind, run, scratch


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    folder = scratch(root / "cases")
    return folder, root / "state", {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_at_once_with_one_line(case, folders):
    folder, state, before = folders
    out = run(case, folder, state)
    assert out.code == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.error_lines()
    assert lines and all(l.startswith("error: ") for l in out.stderr.strip().splitlines()), out.stderr
    assert any(case.says in l for l in lines), out.stderr
    assert out.seconds < 20, "refused only after work started"
    assert left_behind(before, folder, state) == []


def test_many_problems_are_reported_together(folders):
    folder, state, _ = folders
    case = next(c for c in CASES if c.name == "build, five problems at once")
    lines = run(case, folder, state).error_lines()
    for says in ("--compression", "unknown release", "1G floor", "GUEST_USERNAME", "names no bucket"):
        assert any(says in l for l in lines), lines
