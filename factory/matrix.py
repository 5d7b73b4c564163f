"""Several targets in one run (`factory build --config` with a matrix).

Each target's layers are built in turn in this thread while the target
before it assembles in the background: an assembly is mostly compression
(every core, no network) and a layer build mostly package downloads and
installs, so on a small host the two share it well (docs/benchmarks.md,
the matrix row). Verification and publishing of a target run here, after
its assembly, beside the next one's. With `jobs` 1 everything runs in turn.

An assembly reads only its own target's layers, complete before it starts,
so nothing is shared between the two threads but the engine. On Ctrl-C,
SIGTERM or an error, `stop` removes the assemblies' containers (their own
`finally` blocks then release loop devices and work folders), they are
waited for, and the first error is raised.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
L = TypeVar("L")
A = TypeVar("A")


def build_all(targets: Iterable[T], layers: Callable[[T], L], assemble: Callable[[L], A],
              after: Callable[[A], None], jobs: int, stop: Callable[[], None]) -> None:
    targets = list(targets)
    if jobs <= 1 or len(targets) == 1:  # nothing to overlap: all in this thread, as a single build
        for target in targets:
            after(assemble(layers(target)))
        return
    with ThreadPoolExecutor(max_workers=jobs - 1, thread_name_prefix="assemble") as pool:
        waiting: list[Future] = []
        try:
            for target in targets:
                _raise_failed(waiting)
                layered = layers(target)
                waiting.append(pool.submit(assemble, layered))
                while len(waiting) >= jobs:  # jobs - 1 assemblies in flight, and this thread's work
                    after(waiting.pop(0).result())
            while waiting:
                after(waiting.pop(0).result())
        except BaseException:
            for future in waiting:
                future.cancel()
            stop()
            wait(waiting)
            raise


def _raise_failed(waiting: list[Future]) -> None:
    """An assembly that failed stops the run before the next target's layers."""
    for future in waiting:
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()
