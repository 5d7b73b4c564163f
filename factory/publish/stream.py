"""Reading an image for upload: hashed on the way (so what was sent can be
checked against the manifest and the server) and shown as a progress bar."""

from __future__ import annotations

import hashlib
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from factory import log, progress
from factory.errors import PublishFailed

_log = log.get("factory.publish")


class Reader:
    """A file object over the image that hashes and counts what is read."""

    def __init__(self, path: Path, size: int, advance):
        self._file: BinaryIO = open(path, "rb")
        self._size = size
        self._advance = advance
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()
        self.sha512 = hashlib.sha512()  # Glance's default os_hash_algo

    def __len__(self) -> int:  # requests sizes the body with it
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        if data:
            for h in (self.sha256, self.md5, self.sha512):
                h.update(data)
            self._advance(len(data))
        return data

    def chunks(self, size: int) -> Iterator[bytes]:
        while True:
            data = self.read(size)
            if not data:
                return
            yield data

    def close(self) -> None:
        self._file.close()

    def check(self, sha256: str, where: str) -> None:
        """The bytes read were the ones the manifest describes."""
        if self.sha256.hexdigest() != sha256:
            raise PublishFailed(f"the image changed while it was published to {where} (its sha256 no longer matches "
                               "the manifest); nothing was kept there; rebuild the artifact")


@contextmanager
def reading(path: Path, size: int, where: str) -> Iterator[Reader]:
    """A Reader with a progress bar (bytes, rate) on stderr when it is a
    terminal, and one log line with the figures when the upload is done."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True),
                   disable=not sys.stderr.isatty() or progress.showing(), transient=True)
    label = where if len(where) <= 40 else "..." + where[-37:]  # room for the bar on a narrow terminal
    task = bar.add_task(label, total=size)
    started = time.monotonic()
    reader = Reader(path, size, lambda n: bar.advance(task, n))
    try:
        with bar:
            yield reader
    finally:
        reader.close()
    seconds = time.monotonic() - started
    _log.info("uploaded", image=path.name, to=where, bytes=size, seconds=round(seconds, 1),
              mib_per_s=round(size / (1 << 20) / max(seconds, 1e-3), 1))
