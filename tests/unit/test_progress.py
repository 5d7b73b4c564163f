"""Progress renderers on one recorded build: a cached base, a pulled guest,
a datastore layer whose install phase runs, prints, and fails."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from factory import progress
from factory.errors import UsageError
from factory.progress import Event, Json, Plain, Tty, choose

K1, K2, K3 = "1" * 64, "2" * 64, "3" * 64
LOG = "/var/lib/factory/logs/datastore-3333333333333333.log"
RECORDED = [
    Event("base", K1, "layer", "cached", target="debian-bookworm-postgresql"),
    Event("guest", K2, "layer", "pulled", seconds=3.24, bytes=125 << 20, target="debian-bookworm-postgresql"),
    Event("datastore", K3, "pre-install", "running"),
    ("datastore", K3, "+ mkdir -p /etc/trove"),
    Event("datastore", K3, "pre-install", "done", seconds=1.04),
    Event("datastore", K3, "install", "running"),
    ("datastore", K3, "Setting up postgresql-15 (15.8-0+deb12u1) ..."),
    ("datastore", K3, "   "),
    Event("datastore", K3, "install", "failed", seconds=42.0, path=LOG, tail=("E: Unable to fetch some archives",)),
]


def play(renderer) -> None:
    for item in RECORDED:
        if isinstance(item, Event):
            renderer.event(item)
        else:
            renderer.line(*item)
    renderer.close()


def test_plain_is_one_line_per_step_with_its_figures():
    out = io.StringIO()
    play(Plain(out))
    assert out.getvalue().splitlines() == [
        "base 111111111111 cached",
        "guest 222222222222 pulled 125 MiB 3.2s",
        "datastore 333333333333 pre-install running",
        "datastore 333333333333 pre-install done 1.0s",
        "datastore 333333333333 install running",
        f"datastore 333333333333 install failed 42.0s (log: {LOG})",
    ]


def test_json_is_one_event_a_line():
    out = io.StringIO()
    play(Json(out, clock=lambda: 0))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(events) == 6 and all(e["time"] == "1970-01-01T00:00:00Z" for e in events)
    assert events[1] == {"time": "1970-01-01T00:00:00Z", "layer": "guest", "key": K2, "phase": "layer",
                         "state": "pulled", "seconds": 3.2, "bytes": 125 << 20, "target": "debian-bookworm-postgresql"}
    assert events[-1]["state"] == "failed" and events[-1]["path"] == LOG
    assert events[-1]["tail"] == ["E: Unable to fetch some archives"]


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tty_shows_a_live_line_per_running_step_and_prints_finished_ones(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out, clock = io.StringIO(), Clock()
    tty = Tty(Console(file=out, force_terminal=True, width=100), clock=clock)
    for item in RECORDED[:7]:
        tty.event(item) if isinstance(item, Event) else tty.line(*item)
    assert tty.showing()
    clock.now = 142.0
    live = io.StringIO()
    Console(file=live, width=100, color_system=None).print(tty.render())
    (row,) = live.getvalue().splitlines()
    assert row.split()[:4] == ["datastore", "333333333333", "install", "0:42"]
    assert row.rstrip().endswith("Setting up postgresql-15 (15.8-0+deb12u1) ...")
    for item in RECORDED[7:]:
        tty.event(item) if isinstance(item, Event) else tty.line(*item)
    assert not tty.showing()  # nothing runs: the live lines are gone
    text = out.getvalue()
    for done in ("base 111111111111 cached", "guest 222222222222 pulled 125 MiB 3.2s",
                 "datastore 333333333333 pre-install done 1.0s", f"install failed 42.0s (log: {LOG})"):
        assert done in text
    assert "\x1b[32m" in text  # green ticks on a colour terminal


def test_tty_without_colour_when_no_color_is_set(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    play(Tty(Console(file=out, force_terminal=True, width=100)))
    assert "base 111111111111 cached" in out.getvalue() and "\x1b[32m" not in out.getvalue()


@pytest.mark.parametrize("given, environ, terminal, mode", [
    (None, {}, True, "tty"),
    (None, {}, False, "plain"),
    (None, {"CI": "true"}, True, "plain"),
    (None, {"TERM": "dumb"}, True, "plain"),
    (None, {"NO_COLOR": "1"}, True, "tty"),
    (None, {"FACTORY_PROGRESS": "json"}, True, "json"),
    ("plain", {"FACTORY_PROGRESS": "json"}, True, "plain"),
    ("tty", {"CI": "true"}, False, "tty"),
    ("auto", {"FACTORY_PROGRESS": "json", "CI": "1"}, True, "plain"),
])
def test_auto_and_the_ways_to_choose(given, environ, terminal, mode):
    assert choose(given, environ, terminal) == mode


def test_unknown_progress_is_a_usage_error():
    with pytest.raises(UsageError, match="--progress 'fancy' is not known"):
        choose("fancy", {}, True)
    with pytest.raises(UsageError, match="FACTORY_PROGRESS 'x' is not known"):
        choose(None, {"FACTORY_PROGRESS": "x"}, True)


def test_the_module_reports_through_the_chosen_renderer(capsys):
    progress.use("json")
    try:
        progress.event("base", K1, "layer", "built", seconds=95.0)
    finally:
        progress.use("plain")
    assert json.loads(capsys.readouterr().out)["state"] == "built"
