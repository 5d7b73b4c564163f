"""Transfer progress on stderr (bytes, rate), shown only to a person at a terminal:
in CI the log events carry the figures."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from factory import progress


class TransferProgress:
    def __init__(self, what: str):
        self.what = what
        self.done = 0
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> TransferProgress:
        console = Console(stderr=True)
        if console.is_terminal and not progress.showing():  # one live display at a time
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=None)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total or None)

    def advance(self, n: int) -> None:
        self.update(self.done + n)
