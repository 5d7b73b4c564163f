"""Build progress, in BuildKit's manner: `--progress auto|plain|tty|json`
(or FACTORY_PROGRESS). The build reports events (a layer's phase started or
done, a layer cached, pulled, built, pushed, a phase failed) and output
lines; one renderer shows them:

- tty: finished steps as lines, and a live line per running step below
  them (phase, elapsed time, its last output line);
- plain: one line per step, with its duration and how the layer was had;
- json: one event per line on stdout (logs stay on stderr).

auto is tty when stderr is a terminal (and neither CI nor TERM=dumb is
set), else plain. NO_COLOR turns colours off. Logs are not progress: they
go on as --log-format says.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, TextIO

from rich.markup import escape

from factory.errors import UsageError

MODES = ("auto", "plain", "tty", "json")
# States a step ends in; "running" is the only other one.
FINAL = ("done", "cached", "pulled", "built", "pushed", "failed")


@dataclass(frozen=True)
class Event:
    layer: str  # layer name, "datastore-image" or "assemble"
    key: str  # the layer's key (the assembly key for "assemble")
    phase: str  # a DIB phase, or "layer" (the whole layer), "push", "assemble"
    state: str  # running, or one of FINAL
    seconds: float | None = None
    bytes: int | None = None
    target: str | None = None
    path: str | None = None  # the log of a failed step; the manifest of an assembly
    tail: tuple[str, ...] = ()  # a failed step's last log lines

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        if self.seconds is not None:
            data["seconds"] = round(self.seconds, 1)
        return data


def choose(given: str | None, environ: dict[str, str], stderr_is_terminal: bool) -> str:
    """The renderer: --progress, else FACTORY_PROGRESS, else auto, resolved."""
    wanted = (given or environ.get("FACTORY_PROGRESS") or "auto").strip().lower()
    if wanted not in MODES:
        where = "--progress" if given else "FACTORY_PROGRESS"
        raise UsageError(f"{where} '{wanted}' is not known; use {', '.join(MODES)}")
    if wanted != "auto":
        return wanted
    dumb = environ.get("TERM", "") == "dumb"
    return "tty" if stderr_is_terminal and not dumb and not environ.get("CI") else "plain"


def describe(e: Event) -> str:
    """One step as a line: what, which, how, how long, how much."""
    what = f"{e.layer} {e.key[:12]}"
    step = e.state if e.phase in ("layer", "push", e.layer) else f"{e.phase} {e.state}"
    figures = [f"{e.bytes / 2**20:.0f} MiB" if e.bytes else "", f"{e.seconds:.1f}s" if e.seconds is not None else ""]
    line = " ".join(p for p in (what, step, *figures) if p)
    return line + (f" (log: {e.path})" if e.state == "failed" and e.path else "")


class Quiet:
    """No progress shown (the default until a command chooses)."""

    mode = "quiet"

    def event(self, e: Event) -> None:
        pass

    def line(self, layer: str, key: str, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def showing(self) -> bool:
        return False


class Plain(Quiet):
    mode = "plain"

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def event(self, e: Event) -> None:
        out = self.stream or sys.stderr
        out.write(describe(e) + "\n")
        out.flush()


class Json(Quiet):
    mode = "json"

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.time):
        self.stream = stream
        self.clock = clock

    def event(self, e: Event) -> None:
        out = self.stream or sys.stdout
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        out.write(json.dumps({"time": stamp, **e.to_json()}) + "\n")
        out.flush()


class Tty(Quiet):
    """Finished steps printed once; running ones redrawn live below them."""

    mode = "tty"

    def __init__(self, console=None, clock: Callable[[], float] = time.monotonic):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.clock = clock
        self.running: dict[tuple[str, str], list] = {}  # (layer, key) -> [phase, started, last line]
        self.live = None

    def event(self, e: Event) -> None:
        row = (e.layer, e.key)
        if e.state == "running":
            self.running[row] = [e.phase, self.clock(), ""]
            self._start()
            return
        self.running.pop(row, None)
        if not self.running:
            self._stop()
        elif self.live is not None:
            self.live.refresh()
        mark = "[red]✘[/]" if e.state == "failed" else "[green]✔[/]" if e.state in ("built", "done", "pushed") else "[blue]✔[/]"
        self.console.print(f"{mark} {escape(describe(e))}", highlight=False, soft_wrap=True)

    def line(self, layer: str, key: str, text: str) -> None:
        step = self.running.get((layer, key))
        if step is not None and text.strip():
            step[2] = text.strip()

    def render(self):
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        for _ in range(4):
            grid.add_column(no_wrap=True)
        grid.columns[3].overflow = "ellipsis"
        grid.columns[3].ratio = 1
        grid.expand = True
        for (layer, key), (phase, started, last) in self.running.items():
            elapsed = int(self.clock() - started)
            grid.add_row(Text(f"{layer} {key[:12]}", style="bold"), Text(phase, style="cyan"),
                         Text(f"{elapsed // 60}:{elapsed % 60:02d}"), Text(last, style="dim"))
        return grid

    def _start(self) -> None:
        if self.live is None:
            from rich.live import Live

            self.live = Live(get_renderable=self.render, console=self.console, transient=True,
                             refresh_per_second=2, redirect_stdout=True, redirect_stderr=True)
            self.live.start()

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def close(self) -> None:
        self.running.clear()
        self._stop()

    def showing(self) -> bool:
        return self.live is not None


_current: Quiet = Quiet()


def use(mode: str) -> None:
    """Show progress as `mode` (plain, tty or json) from now on."""
    global _current
    _current.close()
    _current = {"plain": Plain, "tty": Tty, "json": Json}[mode]()


def mode() -> str:
    return _current.mode


def event(layer: str, key: str, phase: str, state: str, **figures) -> None:
    _current.event(Event(layer, key, phase, state, **figures))


def line(layer: str, key: str, text: str) -> None:
    _current.line(layer, key, text)


def close() -> None:
    _current.close()


def showing() -> bool:
    """A live display holds the terminal (other bars must wait)."""
    return _current.showing()
