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
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
import docker

from factory import log, owners, progress
from factory.engine import phases
from factory.engine.docker import client
from factory.engine.run import ELEVATED, Bind, Output, PhaseFailed, exec_in, remove, remove_later, run_labels, start
from factory.errors import FactoryError
from factory.hostpaths import visible
from factory.layers import INSIDE_PHASES
from factory.plan import PlannedLayer
from factory.stored import LABEL, LAYER_REPO
from factory.trust import Trust

ROOT_REPO = "factory-root"
# The host's pip cache, in the hooks folder as the target sees it (elements/trove-guest).
PIP_CACHE = "pip-cache"
_log = log.get("engine")
# The root phase writes its new tree (debootstrap's few hundred MB) into
# memory, as disk-image-create does with its tmpfs: measured 27.6 s for the
# root phase into a folder on disk. Device nodes and programs run from it.
ROOT_TMPFS = "rw,exec,dev,suid,mode=0755,size=4g"
ROOT_TMPFS_NEEDS = 6 << 30  # bytes of MemAvailable; below that, a folder on disk


def tmpfs_fits(meminfo: str | None = None) -> bool:
    """Whether the host has memory to spare for the root tree in tmpfs."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return False
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 >= ROOT_TMPFS_NEEDS
    return False


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


def _labels(layer: PlannedLayer, target_name: str) -> dict[str, str]:
    return {
        f"{LABEL}.key": layer.key,
        f"{LABEL}.layer": layer.name,
        f"{LABEL}.target": target_name,
        f"{LABEL}.parent": layer.inputs.parent or "",
        f"{LABEL}.elements": " ".join(sorted(layer.runs)),
        f"{LABEL}.inputs": layer.inputs.canonical(),
    }


def _element_binds(paths: list[Path], host_inputs: dict[str, str]) -> list[Bind]:
    return [(str(p), str(p), "ro") for p in [*paths, *host_inputs]]


class LayerBuild:
    """One layer's build, with everything it starts released in `close`."""

    def __init__(self, layer: PlannedLayer, parent_image: str | None, builder_image: str, trust: Trust,
                 element_paths: list[Path], workroot: Path, logdir: Path, target_name: str, verbose: bool,
                 cache_dir: Path, package_cache: tuple[Path, str] | None = None,
                 commit_as: tuple[str, str] | None = None):
        self.layer = layer
        self.commit_as = commit_as or (LAYER_REPO, layer.key)
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
        self.work = workroot / f"{layer.name}-{layer.key[:12]}-{secrets.token_hex(4)}"
        self.record = owners.record(owners.FOLDER, self.work)
        self.work.mkdir()
        self.hooks = self.work / "hooks"
        self.logfile = logdir / f"{layer.name}-{layer.key[:16]}.log"
        self.logfile.write_text("")
        self.containers: list = []
        self.root_image: str | None = None
        self.env = phases.contract_env(layer.env, layer.runs, element_paths, debug=verbose or log.TRACE)
        self.env.update(trust.env())

    # -- containers -------------------------------------------------------
    def _labels_run(self) -> dict[str, str]:
        return run_labels(self.layer.key)

    def _builder(self, target_root: str | None, privileged: bool):
        """A builder container seeing `target_root` at TARGET_ROOT, or, with
        None, a tmpfs there (the root phase's new tree)."""
        binds = [
            (self.hooks, phases.HOOKS_IN_BUILDER, "rw"),
            *([(target_root, phases.TARGET_IN_BUILDER, "rw")] if target_root else []),
            (self.work / "builder", phases.WORK_IN_BUILDER, "rw"),
            (self.cache_dir, phases.CACHE_IN_BUILDER, "rw"),
            (visible(phases.RUNNER_SOURCE), phases.PHASE_RUNNER, "ro"),
            (visible(phases.TIDY_SOURCE), phases.TIDY, "ro"),
            *_element_binds(self.element_paths, self.layer.host_inputs),
            *self.trust.mounts(),
        ]
        (self.work / "builder").mkdir(exist_ok=True)
        extra = dict(ELEVATED) if privileged else {}
        if not target_root:
            extra["tmpfs"] = {phases.TARGET_IN_BUILDER: ROOT_TMPFS}
        c = start(self.builder_image, binds, self._labels_run(), **extra)
        self.containers.append(c)
        return c

    def _target(self, image: str):
        binds = [(self.hooks, phases.HOOKS_IN_TARGET, "ro"), *self.trust.mounts()]
        if self.package_cache:
            # As DIB's shared apt cache: downloaded packages stay on the host,
            # out of the layer, and serve the next build.
            host, inside = self.package_cache
            host.mkdir(parents=True, exist_ok=True)
            binds.append((host, inside, "rw"))
        # pip's cache, the same way: the agent's downloads and built wheels
        # serve the next build of any guest layer. Mounted inside the hooks
        # folder, on a folder made there, so no mount point enters the layer;
        # an element uses it only if it is there (plain DIB has none).
        pip_cache = self.cache_dir / "pip"
        pip_cache.mkdir(parents=True, exist_ok=True)
        (self.hooks / PIP_CACHE).mkdir(exist_ok=True)
        binds.append((pip_cache, f"{phases.HOOKS_IN_TARGET}/{PIP_CACHE}", "rw"))
        c = start(image, binds, self._labels_run())
        self.containers.append(c)
        return c

    # -- phases -------------------------------------------------------------
    def _phase(self, container, phase: str, command: list[str], env: dict[str, str], out: Output,
               timings: list[PhaseTiming]) -> None:
        started = time.monotonic()
        name, key = self.layer.name, self.layer.key
        progress.event(name, key, phase, "running", target=self.target_name)
        try:
            exec_in(container, command, env, out, f"{name}: {phase}.d", self.logfile)
        except PhaseFailed as e:
            progress.event(name, key, phase, "failed", seconds=time.monotonic() - started, target=self.target_name,
                           path=str(e.logfile), tail=tuple(e.tail))
            raise
        self._timed(phase, started, timings)
        progress.event(name, key, phase, "done", seconds=timings[-1].seconds, target=self.target_name)

    def _outside(self, builder, phase: str, out: Output, timings: list[PhaseTiming]) -> None:
        if not phases.has_hooks(self.hooks, phase):
            return
        _log.info("phase", layer=self.layer.name, phase=phase, where="builder")
        self._phase(builder, phase, ["bash", phases.PHASE_RUNNER, phase], self.env, out, timings)

    def _timed(self, step: str, started: float, timings: list[PhaseTiming]) -> None:
        timings.append(PhaseTiming(step, time.monotonic() - started))
        _log.info("step timed", layer=self.layer.name, step=step, seconds=round(timings[-1].seconds, 2))

    def _inside(self, target, phase: str, out: Output, timings: list[PhaseTiming]) -> None:
        if not phases.has_hooks(self.hooks, phase):
            return
        _log.info("phase", layer=self.layer.name, phase=phase, where="target")
        self._phase(target, phase, phases.in_target_command(phase), {**self.env, "HOME": "/root"}, out, timings)

    def _root(self, out: Output, timings: list[PhaseTiming]) -> str:
        """Run root.d into an empty tree and import it; returns the image id."""
        tree = None if tmpfs_fits() else self.work / "root"
        if tree:
            tree.mkdir()
        builder = self._builder(str(tree) if tree else None, privileged=True)
        self._outside(builder, "root", out, timings)
        # As disk-image-create's create_base: keep the tree's resolv.conf aside
        # (restored at finalise) and release anything root.d left mounted.
        script = (
            f"set -e; t={phases.TARGET_IN_BUILDER}; "
            "for m in $(awk '{print $2}' /proc/mounts | grep \"^$t/\" | sort -r); do umount -l \"$m\" || true; done; "
            "[ -n \"$(ls -A $t | grep -v '^tmp$' | grep -v '^lost+found$')\" ] || { echo 'root.d produced an empty tree' >&2; exit 1; }; "
            "if [ -e $t/etc/resolv.conf ] || [ -L $t/etc/resolv.conf ]; then mv $t/etc/resolv.conf $t/etc/resolv.conf.ORIG; fi; "
            f"bash {phases.TIDY} $t; bash {phases.TIDY} --clamp $t; "
            # The same tree, the same bytes: names sorted, no access or change times.
            "tar --sort=name --numeric-owner --xattrs --xattrs-include='*' --format=posix "
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime "
            f"-C $t -cf {phases.WORK_IN_BUILDER}/root.tar ."
        )
        started = time.monotonic()
        exec_in(builder, ["bash", "-c", script], self.env, out, f"{self.layer.name}: packing the root tree", self.logfile)
        self._remove(builder)
        self._timed("pack root tree", started, timings)
        started = time.monotonic()
        tarball = self.work / "builder" / "root.tar"
        tag = f"{self.layer.key}"
        client().api.import_image_from_file(str(tarball), repository=ROOT_REPO, tag=tag)
        tarball.unlink()
        self._timed("import root tree", started, timings)
        if tree:
            shutil.rmtree(tree, ignore_errors=True)
        self.root_image = f"{ROOT_REPO}:{tag}"
        return self.root_image

    def _clamp(self, target, out: Output) -> None:
        """Mtimes of the layer's own files (whiteouts too, which the merged
        tree hides) clamped to SOURCE_DATE_EPOCH, in the stopped container's upper folder."""
        upper = client().api.inspect_container(target.id).get("GraphDriver", {}).get("Data", {}).get("UpperDir")
        if not upper:
            raise FactoryError("the container engine does not expose the container's upper folder (GraphDriver.UpperDir); use the overlay2 storage driver")
        builder = self._builder(upper, privileged=False)
        exec_in(builder, ["bash", phases.TIDY, "--clamp", phases.TARGET_IN_BUILDER], self.env, out,
                f"{self.layer.name}: clamping mtimes", self.logfile)
        self._remove(builder)

    def _remove(self, container) -> None:
        try:
            remove(container)
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
        out = Output(self.logfile, self.verbose, lambda text: progress.line(self.layer.name, self.layer.key, text))
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
                        exec_in(target, cmd, {**self.env, "HOME": "/root"}, out, f"{self.layer.name}: extra packages", self.logfile)
                elif phases.has_hooks(self.hooks, phase):
                    if builder is None:
                        builder = self._builder(merged, privileged=False)
                    self._outside(builder, phase, out, timings)
            if builder is None:
                builder = self._builder(merged, privileged=False)
            exec_in(builder, ["bash", phases.TIDY, phases.TARGET_IN_BUILDER],
                    {**self.env, "TIDIED_LIST": f"{phases.HOOKS_IN_BUILDER}/{phases.TIDIED_LIST}"}, out,
                    f"{self.layer.name}: tidying", self.logfile)
            self._remove(builder)
            exec_in(target, ["/bin/sh", "-c", phases.REMAKE_INITRAMFS], {**self.env, "HOME": "/root"}, out,
                    f"{self.layer.name}: making the initramfs again", self.logfile)
            committing = time.monotonic()
            target.stop(timeout=1)
            self._clamp(target, out)
            conf = {"Cmd": ["/bin/bash"], "Labels": _labels(self.layer, self.target_name)}
            target.commit(repository=self.commit_as[0], tag=self.commit_as[1], conf=conf)
            self._timed("commit", committing, timings)
            self.containers.remove(target)
            remove_later(target)
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
        owners.forget(self.record)


def build_layer(layer: PlannedLayer, parent_image: str | None, **kw) -> LayerResult:
    job = LayerBuild(layer, parent_image, **kw)
    try:
        return job.run()
    finally:
        job.close()

