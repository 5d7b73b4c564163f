"""Build one layer: DIB phases in containers, committed as an image.

The target is a container made from the parent layer's image. Inside phases
run in it (`docker exec`); outside phases run in a builder container that sees
the target's root filesystem (the engine's merged overlay of that container)
at TARGET_ROOT. The base layer's root phase runs first, privileged, in the
builder, into an empty folder that is then imported as the tree to build on.
Only a finished layer is committed, and only then does it get its tag.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
import docker

from factory import log
from factory.engine import phases
from factory.engine.docker import client
from factory.errors import FactoryError
from factory.hostpaths import visible
from factory.layers import INSIDE_PHASES
from factory.plan import LAYER_REPO, PlannedLayer
from factory.trust import Trust

ROOT_REPO = "factory-root"
# PID 1 of build containers. Unlike `sleep infinity` it reaps orphaned
# processes (a package script that starts and stops a daemon, as mysql's does,
# waits for its pid to vanish) and exits at once on SIGTERM.
KEEPALIVE = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
# What root.d needs (debootstrap: mount proc/sys in the new tree, make device
# nodes, chroot) without the whole of --privileged, which some hosts refuse.
ELEVATED = {
    "cap_add": ["SYS_ADMIN", "MKNOD", "SYS_CHROOT", "SETFCAP", "DAC_READ_SEARCH"],
    "security_opt": ["apparmor=unconfined", "seccomp=unconfined"],
}
LABEL = "org.factory"
_log = log.get("engine")


@dataclass
class PhaseTiming:
    phase: str
    seconds: float


@dataclass
class LayerResult:
    layer: str
    key: str
    seconds: float
    phases: list[PhaseTiming] = field(default_factory=list)


class PhaseFailed(FactoryError):
    pass


class _Output:
    """Phase output: live with -v, always to the layer's log file, last lines kept for errors."""

    def __init__(self, logfile: Path, verbose: bool):
        self.file = open(logfile, "a", encoding="utf-8", errors="replace")
        self.verbose = verbose
        self.tail: list[str] = []
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        text = self._partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.file.write(line + "\n")
            self.tail = (self.tail + [line])[-25:]
            if self.verbose:
                print(line, flush=True)

    def close(self) -> None:
        if self._partial:
            self.feed(b"\n")
        self.file.close()


def _exec(container, cmd: list[str], env: dict[str, str], out: _Output, what: str, logfile: Path) -> None:
    api = client().api
    exec_id = api.exec_create(container.id, cmd, environment=env, user="root", workdir="/")["Id"]
    for chunk in api.exec_start(exec_id, stream=True):
        out.feed(chunk)
    code = api.exec_inspect(exec_id)["ExitCode"]
    if code != 0:
        tail = "\n".join(out.tail[-15:])
        raise PhaseFailed(f"{what} failed (exit {code}); last lines:\n{tail}\nfull log: {logfile}")


def _labels(layer: PlannedLayer, target_name: str) -> dict[str, str]:
    return {
        f"{LABEL}.key": layer.key,
        f"{LABEL}.layer": layer.name,
        f"{LABEL}.target": target_name,
        f"{LABEL}.parent": layer.inputs.parent or "",
        f"{LABEL}.elements": " ".join(sorted(layer.runs)),
        f"{LABEL}.inputs": layer.inputs.canonical(),
    }


def _mounts(binds: list[str]) -> list[docker.types.Mount]:
    """'src:dst:mode' -> bind mounts. Mounts (unlike the `volumes` shorthand)
    are not declared as image volumes, so a committed layer declares none."""
    out = []
    for bind in binds:
        src, dst, mode = bind.split(":")
        out.append(docker.types.Mount(target=dst, source=src, type="bind", read_only=(mode == "ro")))
    return out


def _element_binds(paths: list[Path], host_inputs: dict[str, str]) -> list[str]:
    binds = [f"{p}:{p}:ro" for p in paths]
    binds += [f"{p}:{p}:ro" for p in host_inputs]
    return binds


class LayerBuild:
    """One layer's build, with everything it starts released in `close`."""

    def __init__(self, layer: PlannedLayer, parent_image: str | None, builder_image: str, trust: Trust,
                 element_paths: list[Path], workroot: Path, logdir: Path, target_name: str, verbose: bool,
                 cache_dir: Path, package_cache: tuple[Path, str] | None = None):
        self.layer = layer
        self.parent_image = parent_image
        self.builder_image = builder_image
        self.trust = trust
        self.element_paths = element_paths
        self.target_name = target_name
        self.verbose = verbose
        self.cache_dir = cache_dir
        self.package_cache = package_cache
        workroot.mkdir(parents=True, exist_ok=True)
        logdir.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=f"{layer.name}-{layer.key[:12]}-", dir=workroot))
        self.hooks = self.work / "hooks"
        self.logfile = logdir / f"{layer.name}-{layer.key[:16]}.log"
        self.logfile.write_text("")
        self.containers: list = []
        self.root_image: str | None = None
        self.env = phases.contract_env(layer.env, layer.runs, element_paths, debug=verbose)
        self.env.update(trust.env())

    # -- containers -------------------------------------------------------
    def _labels_run(self) -> dict[str, str]:
        return {f"{LABEL}.building": self.layer.key, f"{LABEL}.pid": str(os.getpid())}

    def _builder(self, target_root: str, privileged: bool):
        binds = [
            f"{self.hooks}:{phases.HOOKS_IN_BUILDER}:rw",
            f"{target_root}:{phases.TARGET_IN_BUILDER}:rw",
            f"{self.work / 'builder'}:{phases.WORK_IN_BUILDER}:rw",
            f"{self.cache_dir}:{phases.CACHE_IN_BUILDER}:rw",
            f"{visible(phases.RUNNER_SOURCE)}:{phases.PHASE_RUNNER}:ro",
            *_element_binds(self.element_paths, self.layer.host_inputs),
            *self.trust.mounts(),
        ]
        (self.work / "builder").mkdir(exist_ok=True)
        extra = ELEVATED if privileged else {}
        c = client().containers.create(
            self.builder_image, command=KEEPALIVE, entrypoint=[], mounts=_mounts(binds),
            labels=self._labels_run(), working_dir="/", **extra,
        )
        self.containers.append(c)
        c.start()
        return c

    def _target(self, image: str):
        binds = [f"{self.hooks}:{phases.HOOKS_IN_TARGET}:ro", *self.trust.mounts()]
        if self.package_cache:
            # As DIB's shared apt cache: downloaded packages stay on the host,
            # out of the layer, and serve the next build.
            host, inside = self.package_cache
            host.mkdir(parents=True, exist_ok=True)
            binds.append(f"{host}:{inside}:rw")
        c = client().containers.create(
            image, command=KEEPALIVE, entrypoint=[], mounts=_mounts(binds), labels=self._labels_run(),
            working_dir="/", environment={},
        )
        self.containers.append(c)
        c.start()
        return c

    # -- phases -------------------------------------------------------------
    def _outside(self, builder, phase: str, out: _Output, timings: list[PhaseTiming]) -> None:
        if not phases.has_hooks(self.hooks, phase):
            return
        started = time.monotonic()
        _log.info("phase", layer=self.layer.name, phase=phase, where="builder")
        _exec(builder, ["bash", phases.PHASE_RUNNER, phase], self.env, out, f"{self.layer.name}: {phase}.d", self.logfile)
        timings.append(PhaseTiming(phase, time.monotonic() - started))

    def _inside(self, target, phase: str, out: _Output, timings: list[PhaseTiming]) -> None:
        if not phases.has_hooks(self.hooks, phase):
            return
        started = time.monotonic()
        _log.info("phase", layer=self.layer.name, phase=phase, where="target")
        env = {**self.env, "HOME": "/root"}
        _exec(target, phases.in_target_command(phase), env, out, f"{self.layer.name}: {phase}.d", self.logfile)
        timings.append(PhaseTiming(phase, time.monotonic() - started))

    def _root(self, out: _Output, timings: list[PhaseTiming]) -> str:
        """Run root.d into an empty tree and import it; returns the image id."""
        tree = self.work / "root"
        tree.mkdir()
        builder = self._builder(str(tree), privileged=True)
        self._outside(builder, "root", out, timings)
        # As disk-image-create's create_base: keep the tree's resolv.conf aside
        # (restored at finalise) and release anything root.d left mounted.
        script = (
            f"set -e; t={phases.TARGET_IN_BUILDER}; "
            "for m in $(awk '{print $2}' /proc/mounts | grep \"^$t/\" | sort -r); do umount -l \"$m\" || true; done; "
            "[ -n \"$(ls -A $t | grep -v '^tmp$' | grep -v '^lost+found$')\" ] || { echo 'root.d produced an empty tree' >&2; exit 1; }; "
            "if [ -e $t/etc/resolv.conf ] || [ -L $t/etc/resolv.conf ]; then mv $t/etc/resolv.conf $t/etc/resolv.conf.ORIG; fi; "
            f"tar --numeric-owner --xattrs --xattrs-include='*' -C $t -cf {phases.WORK_IN_BUILDER}/root.tar ."
        )
        _exec(builder, ["bash", "-c", script], self.env, out, f"{self.layer.name}: packing the root tree", self.logfile)
        self._remove(builder)
        tarball = self.work / "builder" / "root.tar"
        tag = f"{self.layer.key}"
        client().api.import_image_from_file(str(tarball), repository=ROOT_REPO, tag=tag)
        tarball.unlink()
        shutil.rmtree(tree, ignore_errors=True)
        self.root_image = f"{ROOT_REPO}:{tag}"
        return self.root_image

    def _remove(self, container) -> None:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            _log.warning("could not remove container", id=container.short_id, error=str(e))
        if container in self.containers:
            self.containers.remove(container)

    # -- the whole layer -------------------------------------------------------
    def run(self) -> LayerResult:
        started = time.monotonic()
        timings: list[PhaseTiming] = []
        phases.make_hooks(self.hooks, self.layer.visible, self.layer.runs, self.layer.spec.phases)
        (self.hooks / "factory-layer.json").write_text(json.dumps(self.layer.to_json()))
        out = _Output(self.logfile, self.verbose)
        try:
            parent = self.parent_image
            if "root" in self.layer.spec.phases:
                parent = self._root(out, timings)
            if parent is None:
                raise FactoryError(f"layer {self.layer.name} has no parent image and no root phase")
            target = self._target(parent)
            merged = client().api.inspect_container(target.id).get("GraphDriver", {}).get("Data", {}).get("MergedDir")
            if not merged:
                raise FactoryError("the container engine does not expose the container's root filesystem (GraphDriver.MergedDir); use the overlay2 storage driver")
            builder = None
            for phase in self.layer.spec.phases:
                if phase == "root":
                    continue
                if phase in INSIDE_PHASES:
                    self._inside(target, phase, out, timings)
                    if phase == "install" and self.layer.packages:
                        cmd = ["/bin/sh", "-c", 'PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" install-packages "$@"', "-", *self.layer.packages]
                        _exec(target, cmd, {**self.env, "HOME": "/root"}, out, f"{self.layer.name}: extra packages", self.logfile)
                elif phases.has_hooks(self.hooks, phase):
                    if builder is None:
                        builder = self._builder(merged, privileged=False)
                    self._outside(builder, phase, out, timings)
            if builder is not None:
                self._remove(builder)
            target.stop(timeout=1)
            conf = {"Cmd": ["/bin/bash"], "Labels": _labels(self.layer, self.target_name)}
            target.commit(repository=LAYER_REPO, tag=self.layer.key, conf=conf)
            return LayerResult(self.layer.name, self.layer.key, time.monotonic() - started, timings)
        finally:
            out.close()

    def close(self) -> None:
        for c in list(self.containers):
            self._remove(c)
        if self.root_image:
            try:  # untag only: the committed layer still holds these bytes as its parent
                client().images.remove(self.root_image, noprune=True)
            except docker.errors.APIError:
                pass
        shutil.rmtree(self.work, ignore_errors=True)


def build_layer(layer: PlannedLayer, parent_image: str | None, **kw) -> LayerResult:
    job = LayerBuild(layer, parent_image, **kw)
    try:
        return job.run()
    finally:
        job.close()


def sweep_orphans() -> int:
    """Remove build containers whose factory process is gone (after a kill -9)."""
    removed = 0
    for c in client().containers.list(all=True, filters={"label": f"{LABEL}.building"}):
        pid = c.labels.get(f"{LABEL}.pid", "")
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        c.remove(force=True, v=True)
        removed += 1
    return removed
