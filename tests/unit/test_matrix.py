"""factory/matrix.py: a matrix's next layers build while a target assembles."""

from __future__ import annotations

import threading

import pytest

from factory.matrix import build_all


class Recorder:
    """Stand-ins for the layer build, the assembly and what follows it,
    writing down what happens in which order."""

    def __init__(self, fail_assembly: str | None = None, fail_layers: str | None = None):
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.assembling = threading.Event()
        self.release = threading.Event()
        self.fail_assembly, self.fail_layers = fail_assembly, fail_layers
        self.stopped = False

    def note(self, what: str) -> None:
        with self.lock:
            self.log.append(what)

    def layers(self, target: str) -> str:
        self.note(f"layers {target}")
        if target == self.fail_layers:
            raise RuntimeError(f"layers of {target} failed")
        return target

    def assemble(self, target: str) -> str:
        self.note(f"assemble {target} start")
        if target == self.fail_assembly:
            raise RuntimeError(f"assembly of {target} failed")
        self.assembling.set()
        self.release.wait(5)
        self.note(f"assemble {target} end")
        return f"{target}.manifest"

    def after(self, manifest: str) -> None:
        self.note(f"after {manifest}")

    def stop(self) -> None:
        self.stopped = True
        self.release.set()  # as removing the container ends the assembly


def test_the_next_targets_layers_build_while_one_assembles():
    r = Recorder()
    real_layers = r.layers

    def layers(target):
        if target == "b":  # held until a's assembly is under way, then a's assembly may end
            assert r.assembling.wait(5)
            out = real_layers(target)
            r.release.set()
            return out
        return real_layers(target)

    build_all(["a", "b", "c"], layers, r.assemble, r.after, jobs=2, stop=r.stop)
    assert r.log.index("layers b") < r.log.index("assemble a end")
    assert [l for l in r.log if l.startswith("after")] == ["after a.manifest", "after b.manifest", "after c.manifest"]
    assert not r.stopped


def test_one_job_builds_each_target_in_turn():
    r = Recorder()
    r.release.set()
    build_all(["a", "b"], r.layers, r.assemble, r.after, jobs=1, stop=r.stop)
    assert r.log == ["layers a", "assemble a start", "assemble a end", "after a.manifest",
                     "layers b", "assemble b start", "assemble b end", "after b.manifest"]


def test_a_failed_assembly_stops_the_run_before_more_layers_and_is_raised():
    r = Recorder(fail_assembly="a")
    r.release.set()
    barrier = threading.Event()
    real_assemble = r.assemble

    def assemble(target):
        try:
            return real_assemble(target)
        finally:
            barrier.set()

    def layers(target):
        if target == "c":
            raise AssertionError("c's layers were built after a's assembly failed")
        out = r.layers(target)
        if target == "b":
            assert barrier.wait(5)  # a's assembly has failed by the time b's layers are done
        return out

    with pytest.raises(RuntimeError, match="assembly of a failed"):
        build_all(["a", "b", "c"], layers, assemble, r.after, jobs=2, stop=r.stop)
    assert "layers c" not in r.log and not any(l.startswith("after") for l in r.log)
    assert r.stopped


def test_a_failure_here_stops_the_running_assembly_and_waits_for_it():
    r = Recorder(fail_layers="b")

    def layers(target):
        if target == "b":
            assert r.assembling.wait(5)
        return r.layers(target)

    with pytest.raises(RuntimeError, match="layers of b failed"):
        build_all(["a", "b"], layers, r.assemble, r.after, jobs=2, stop=r.stop)
    assert r.stopped
    assert "assemble a end" in r.log  # waited for: it unwound before the error was raised
    assert not any(l.startswith("after") for l in r.log)


def test_a_single_target_is_built_in_this_thread():
    r = Recorder()
    r.release.set()
    seen = []
    build_all(["a"], r.layers, lambda t: seen.append(threading.current_thread()) or r.assemble(t), r.after,
              jobs=2, stop=r.stop)
    assert seen == [threading.main_thread()]
