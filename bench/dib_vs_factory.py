"""Plain DIB against the factory, side by side, in one run on one machine.

    .venv/bin/python bench/dib_vs_factory.py [--cases cold,unchanged,...] [--sides both|factory|dib]

Target: debian bookworm, native datastore, the 13.0.1 guest agent from PyPI.
Plain DIB is PyPI's disk-image-create (the version the factory pins), run in
the factory's builder image with the same elements, mirrors and qcow2 options,
plus the bench-only element bench/elements/bench-ca, which lends the host's CA
to DIB's chroot so that its pip reaches the package index through the proxy.

Each run is isolated from the host's other builds: its own state folder
(package caches, work, logs), its own DIB cache, and a run id passed as
`--env BENCH_RUN=<id>` so that every layer key is new (cold means cold without
removing anyone's layers). Its layers are removed at the end unless --keep.

Cases (in this order; a case that needs the target built builds it first,
unmeasured, when `cold` is not selected):
  cold          empty package caches, no layers of the target
  unchanged     the same build again
  datastore     a hook added to debian-postgresql
  guest         a hook added to debian-guest
  second        the mariadb target on the built distro
  matrix        a change to debian-guest, then postgresql, mariadb and redis
                (the factory: one --config build; DIB: three builds, of
                which those the guest and second cases made count)
  newmachine    a second dockerd (own data root and bridge, empty store)
                building the target from a registry on 127.0.0.1 the first
                engine pushed to; DIB has no cache to share: its figure is
                its cold build (select `cold` too to have it). Its
                containers have no route out: the assembly installs nothing
                (the base layer carries the bootloader's packages)
  zstd          the datastore change again, both sides compressing with zstd

Printed: the table (Markdown), the profile of the factory's cold build and
datastore change (its `step timed` log events), and the raw figures as JSON
(--json FILE too).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from engines import SecondEngine  # noqa: E402
BENCH_ELEMENTS = Path(__file__).resolve().parent / "elements"
FACTORY = str(Path(sys.executable).parent / "factory")
AGENT = "13.0.1"
CASES = ["cold", "unchanged", "datastore", "guest", "second", "matrix", "newmachine", "zstd"]
MATRIX = ["postgresql", "mariadb", "redis"]
DIB_ELEMENTS = ["debian-minimal", "vm", "cloud-init", "cloud-init-datasources", "openssh-server", "debian-guest"]
CA_IN_DIB = "/bench/ca.pem"


@dataclass
class Run:
    """One command's measurement."""
    seconds: float
    peak_rss_mib: float = 0.0
    peak_disk_mib: float = 0.0
    events: list[dict] = field(default_factory=list)


class DiskPeak:
    """The peak growth of used space on the filesystem holding `path` while
    a command runs (the state folder, the engine's store and DIB's output all
    live there on this machine; other users of the disk count too)."""

    def __init__(self, path: str):
        self.path = path
        self.peak = 0
        self._stop = threading.Event()

    def _used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def __enter__(self):
        self.base = self._used()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, self._used() - self.base)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._used() - self.base)


def measure(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Run:
    """Run `cmd`; its wall time, peak RSS (it and the children it waited
    for), the disk it grew, and its JSON log events when it writes them."""
    log = log or Path(tempfile.mktemp(prefix="bench-", suffix=".log"))
    with open(log, "w") as out, DiskPeak("/var/lib") as disk:
        started = time.monotonic()
        p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.monotonic() - started
    p.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if p.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}  (log: {log})")
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return Run(seconds, usage.ru_maxrss / 1024, disk.peak / 2**20, events)


class Bench:
    def __init__(self, args, tmp: Path):
        sys.path.insert(0, str(REPO))
        from factory.engine.builder import ensure_builder
        from factory.mirrors import host_mirrors
        from factory.trust import host_trust

        self.args = args
        self.tmp = tmp
        self.trust = host_trust()
        self.builder = ensure_builder(self.trust).tag
        self.mirrors = host_mirrors("debian")
        self.elements = tmp / "elements"
        shutil.copytree(REPO / "elements", self.elements)
        for d in ("dib-out", "dib-cache", "factory-out", "state", "logs"):
            (tmp / d).mkdir()
        self.fenv = {"ELEMENTS_PATH": str(self.elements), "FACTORY_STATE_DIR": str(tmp / "state")}
        self.built: set[str] = set()  # datastores the factory has built in this run
        self.dib_builds: dict[str, Run] = {}  # datastore -> DIB's latest warm-cache build with a changed guest element
        self.results: dict[str, dict] = {}
        self.count = 0

    # -- the two sides ----------------------------------------------------------
    def target(self, datastore: str) -> list[str]:
        return ["--distro", "debian", "--release", self.args.release, "--datastore", datastore,
                "--agent-source", f"pypi:{AGENT}", "--env", f"BENCH_RUN={self.args.run_id}"]

    def factory(self, what: str, args: list[str], env: dict[str, str] | None = None, output: str = "factory-out",
                limit: int | None = None) -> Run:
        self.count += 1
        log = self.tmp / "logs" / f"{self.count:02d}-factory-{what}.log"
        cmd = [FACTORY, "--log-format", "json", "build", *args, "--output", str(self.tmp / output)]
        if limit:  # SIGTERM: the factory stops and removes what it started
            cmd = ["timeout", str(limit), *cmd]
        run = measure(cmd, {**self.fenv, **(env or {})}, log)
        print(f"  factory {what}: {run.seconds:.1f} s (log {log})", file=sys.stderr, flush=True)
        return run

    def dib(self, what: str, datastore: str, qemu_options: str = "compat=1.1") -> Run:
        """disk-image-create in a builder container, as a user would run it by hand."""
        env = {"DIB_RELEASE": self.args.release, "GUEST_USERNAME": "trove", "GUEST_LOGDIR": "/var/log/trove",
               "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive", "SERVICE_TYPE": datastore, "DATASTORE_MODE": "native",
               "TROVE_AGENT_SOURCE": "pypi", "TROVE_AGENT_VERSION": AGENT, "BENCH_CA_BUNDLE": CA_IN_DIB,
               "ELEMENTS_PATH": "/elements:/bench-elements", **self.mirrors}
        envargs = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        cmd = ["docker", "run", "--rm", "--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD", "--cap-add", "SYS_CHROOT",
               "--security-opt", "apparmor=unconfined", "--security-opt", "seccomp=unconfined",
               "--device-cgroup-rule", "b 7:* rwm", "--device-cgroup-rule", "b 259:* rwm",
               "--device-cgroup-rule", "c 10:237 rwm", "-v", "/dev:/dev",
               "-v", f"{self.elements}:/elements:ro", "-v", f"{BENCH_ELEMENTS}:/bench-elements:ro",
               "-v", f"{self.trust.ca_bundle}:{CA_IN_DIB}:ro",
               "-v", f"{self.tmp / 'dib-out'}:/out", "-v", f"{self.tmp / 'dib-cache'}:/root/.cache/image-create",
               *envargs, self.builder,
               "disk-image-create", "-a", "amd64", "-o", f"/out/{datastore}", "-t", "qcow2",
               "--qemu-img-options", qemu_options, *DIB_ELEMENTS, "bench-ca", f"debian-{datastore}"]
        self.count += 1
        log = self.tmp / "logs" / f"{self.count:02d}-dib-{what}.log"
        run = measure(cmd, log=log)
        print(f"  DIB {what}: {run.seconds:.1f} s (log {log})", file=sys.stderr, flush=True)
        return run

    def change(self, element: str, text: str) -> None:
        # Named after its element: DIB refuses two elements' hooks of one name.
        hook = self.elements / element / "post-install.d" / f"99-bench-change-{element}"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(f"#!/bin/bash\necho {text} > /etc/bench-change-{element}\n")
        hook.chmod(0o755)

    def ensure_built(self, datastore: str = "postgresql") -> None:
        if self.args.sides != "dib" and datastore not in self.built:
            print(f"  (unmeasured) factory build of {datastore} first", file=sys.stderr)
            self.factory(f"prepare-{datastore}", self.target(datastore))
            self.built.add(datastore)

    def record(self, case: str, dib: Run | None, fac: Run | None, **extra) -> None:
        self.results[case] = {
            "dib_s": dib and round(dib.seconds, 1), "factory_s": fac and round(fac.seconds, 1),
            "factory_peak_rss_mib": fac and round(fac.peak_rss_mib), "factory_peak_disk_mib": fac and round(fac.peak_disk_mib),
            "dib_peak_disk_mib": dib and round(dib.peak_disk_mib), **extra,
        }
        if fac is not None and fac.events:
            self.results[case]["profile"] = profile(fac.events)

    def sides(self, what: str, datastore: str, fargs: list[str] | None = None,
              qemu_options: str = "compat=1.1") -> tuple[Run | None, Run | None]:
        d = self.dib(what, datastore, qemu_options) if self.args.sides != "factory" else None
        f = self.factory(what, fargs or self.target(datastore)) if self.args.sides != "dib" else None
        return d, f

    # -- the cases --------------------------------------------------------------
    def cold(self) -> None:
        d, f = self.sides("cold", "postgresql")
        self.built.add("postgresql")
        sizes = {}
        if d:
            sizes["dib_qcow2_mib"] = round((self.tmp / "dib-out" / "postgresql.qcow2").stat().st_size / 2**20, 1)
        if f:
            sizes["factory_qcow2_mib"] = round(newest_qcow2(self.tmp / "factory-out").stat().st_size / 2**20, 1)
        self.record("cold", d, f, **sizes)

    def unchanged(self) -> None:
        self.ensure_built()
        self.record("unchanged", *self.sides("unchanged", "postgresql"))

    def datastore(self) -> None:
        self.ensure_built()
        self.change("debian-postgresql", "datastore-1")
        self.record("datastore", *self.sides("datastore", "postgresql"))

    def guest(self) -> None:
        self.ensure_built()
        self.change("debian-guest", "guest-1")
        d, f = self.sides("guest", "postgresql")
        if d:
            self.dib_builds["postgresql"] = d
        self.record("guest", d, f)

    def second(self) -> None:
        self.ensure_built()
        d, f = self.sides("second", "mariadb")
        if d and "dib_s" in self.results.get("guest", {}):
            self.dib_builds["mariadb"] = d
        self.record("second", d, f)
        self.built.add("mariadb")

    def matrix(self) -> None:
        self.ensure_built()
        self.change("debian-guest", "guest-matrix")
        dib, reused = None, []
        if self.args.sides != "factory":
            # DIB shares nothing between targets: a matrix is one full build
            # per datastore. The builds this run already made of a datastore
            # (warm package cache, the guest element changed by one hook line)
            # are those builds; only the others are run here.
            runs = []
            for ds in MATRIX:
                if ds in self.dib_builds:
                    runs.append(self.dib_builds[ds])
                    reused.append(ds)
                else:
                    runs.append(self.dib(f"matrix-{ds}", ds))
            dib = Run(sum(r.seconds for r in runs), peak_disk_mib=max(r.peak_disk_mib for r in runs))
        fac = None
        if self.args.sides != "dib":
            config = self.tmp / "matrix.yaml"
            config.write_text(json.dumps({
                "defaults": {"distro": "debian", "release": self.args.release, "agent_source": f"pypi:{AGENT}",
                             "env": {"BENCH_RUN": self.args.run_id}},
                "matrix": {"datastore": MATRIX},
            }))
            fac = self.factory("matrix", ["--config", str(config)])
            self.built.update(MATRIX)
        self.record("matrix", dib, fac, dib_builds_from_earlier_cases=reused)

    def newmachine(self) -> None:
        if self.args.sides == "dib":
            return
        self.ensure_built()
        sys.path.insert(0, str(REPO))
        from tests.servers.registry import Registry

        reg_dir = self.tmp / "registry"
        reg_dir.mkdir()
        registry = Registry(reg_dir, repo="bench/layers").start()
        engine = None
        try:
            push = self.factory("push", [*self.target("postgresql"), "--cache-to", registry.url])
            engine = SecondEngine(self.tmp / "engine2")
            setup = engine.start(self.builder)
            state2 = self.tmp / "state2"
            state2.mkdir()
            f = self.factory("newmachine", [*self.target("postgresql"), "--cache-from", registry.url],
                             env={"DOCKER_HOST": engine.host, "FACTORY_STATE_DIR": str(state2)}, output="engine2-out", limit=600)
            cold = self.results.get("cold", {}).get("dib_s")
            self.record("newmachine", Run(cold) if cold else None, f, push_s=round(push.seconds, 1),
                        engine_setup_s=round(setup, 1), registry_mib=round(sum(registry.blobs().values()) / 2**20))
        finally:
            if engine:
                engine.stop()
            registry.stop()

    def zstd(self) -> None:
        self.ensure_built()
        self.change("debian-postgresql", "datastore-zstd")
        self.record("zstd", *self.sides("zstd", "postgresql", [*self.target("postgresql"), "--compression", "zstd"],
                                        "compat=1.1,compression_type=zstd"))

    # -- after ------------------------------------------------------------------
    def remove_layers(self) -> None:
        """This run's layers (and only those: their keys hold its run id)."""
        out = subprocess.run(["docker", "images", "--filter", "label=org.factory.key", "--format", "{{.Repository}}:{{.Tag}}"],
                             capture_output=True, text=True).stdout.split()
        mine = []
        for ref in out:
            inputs = subprocess.run(["docker", "image", "inspect", "--format", '{{index .Config.Labels "org.factory.inputs"}}', ref],
                                    capture_output=True, text=True).stdout
            if f'"BENCH_RUN": "{self.args.run_id}"' in inputs or f'"BENCH_RUN":"{self.args.run_id}"' in inputs:
                mine.append(ref)
        if mine:
            subprocess.run(["docker", "rmi", *mine], capture_output=True)
        print(f"removed this run's {len(mine)} layer images", file=sys.stderr)


def newest_qcow2(folder: Path) -> Path:
    return max(folder.glob("*.qcow2"), key=lambda p: p.stat().st_mtime)


def profile(events: list[dict]) -> dict:
    """Seconds per layer and per step, from the factory's JSON log events."""
    layers: dict[str, float] = {}
    steps: list[dict] = []
    for e in events:
        if e.get("event") == "layer built":
            layers[e["layer"]] = round(e["seconds"], 1)
        elif e.get("event") == "step timed":
            steps.append({"layer": e["layer"], "step": e["step"], "seconds": e["seconds"]})
    return {"layers": layers, "steps": steps}


GOALS = {  # case -> (what the issue asks, the limit as a ratio to DIB; None: absolute)
    "cold": ("at most 1.0x", 1.0),
    "unchanged": ("under 2 s", None),
    "datastore": ("at most 0.20x", 0.20),
    "guest": ("at most 0.45x", 0.45),
    "second": ("at most 0.25x", 0.25),
    "matrix": ("at most 0.40x", 0.40),
    "newmachine": ("at most 0.30x DIB cold", 0.30),
    "zstd": ("(no goal)", None),
}
TITLES = {
    "cold": "cold build", "unchanged": "unchanged rebuild", "datastore": "datastore element changed",
    "guest": "guest element changed", "second": "second datastore (mariadb)",
    "matrix": "matrix of 3 datastores after a guest change, total", "newmachine": "new machine, layers from a registry",
    "zstd": "datastore element changed, both zstd",
}


def report(results: dict) -> str:
    lines = ["| case | plain DIB s | factory s | factory/DIB | goal | met |", "|---|---:|---:|---:|---|---|"]
    for case in CASES:
        r = results.get(case)
        if not r:
            continue
        if r.get("failed"):
            lines.append(f"| {TITLES[case]} | failed: {r['failed'].splitlines()[0][:120]} | | | | |")
            continue
        d, f = r.get("dib_s"), r.get("factory_s")
        ratio = f / d if d and f is not None else None
        goal, limit = GOALS[case]
        if case == "unchanged":
            met = "yes" if f is not None and f < 2 else "no"
        elif limit is None or ratio is None:
            met = ""
        else:
            met = "yes" if ratio <= limit else "no"
        lines.append(f"| {TITLES[case]} | {_n(d)} | {_n(f)} | {'' if ratio is None else f'{ratio:.2f}'} | {goal} | {met} |")
    cold = results.get("cold", {})
    if cold.get("dib_qcow2_mib") or cold.get("factory_qcow2_mib"):
        d, f = cold.get("dib_qcow2_mib"), cold.get("factory_qcow2_mib")
        lines.append(f"| qcow2 MiB | {_n(d)} | {_n(f)} | {f / d:.2f} | at most DIB's | {'yes' if f <= d else 'no'} |"
                     if d and f else f"| qcow2 MiB | {_n(d)} | {_n(f)} | | | |")
    lines += ["", "| case | factory peak RSS MiB | factory peak disk MiB | DIB peak disk MiB |", "|---|---:|---:|---:|"]
    for case in CASES:
        if r := results.get(case):
            lines.append(f"| {TITLES[case]} | {_n(r.get('factory_peak_rss_mib'))} | {_n(r.get('factory_peak_disk_mib'))} | {_n(r.get('dib_peak_disk_mib'))} |")
    for case in ("cold", "datastore"):
        prof = results.get(case, {}).get("profile")
        if not prof:
            continue
        lines += ["", f"Profile of the factory's {TITLES[case]} (seconds):", "",
                  "| layer | step | s |", "|---|---|---:|"]
        for layer, s in prof["layers"].items():
            lines.append(f"| {layer} | (whole layer) | {s:.1f} |")
        for st in prof["steps"]:
            lines.append(f"| {st['layer']} | {st['step']} | {st['seconds']:.1f} |")
    return "\n".join(lines)


def _n(v) -> str:
    return "" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", default="bookworm")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma separated, from {','.join(CASES)}")
    ap.add_argument("--sides", default="both", choices=["both", "factory", "dib"])
    ap.add_argument("--run-id", default=secrets.token_hex(4), help="enters every layer key; reuse one with --keep to iterate")
    ap.add_argument("--keep", action="store_true", help="keep this run's layers and work folder")
    ap.add_argument("--workdir", default="/var/tmp", help="where the run's folder goes")
    ap.add_argument("--json", help="also write the raw figures here")
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    tmp = Path(args.workdir) / f"factory-bench-{args.run_id}"
    tmp.mkdir(parents=True, exist_ok=True)
    if any(tmp.iterdir()):
        shutil.rmtree(tmp)
        tmp.mkdir()
    bench = Bench(args, tmp)
    started, started_at = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        for case in CASES:
            if case in cases:
                print(f"case {case}", file=sys.stderr, flush=True)
                try:
                    getattr(bench, case)()
                except (SystemExit, Exception) as e:  # one failed case does not cost the others
                    print(f"case {case} failed: {e}", file=sys.stderr, flush=True)
                    bench.results[case] = {"failed": str(e)[:500]}
    finally:
        raw = {"run_id": args.run_id, "release": args.release, "sides": args.sides, "agent": AGENT,
               "started": started_at, "wall_s": round(time.monotonic() - started, 1),
               "cases": bench.results}
        if args.json:
            Path(args.json).write_text(json.dumps(raw, indent=1))
        if not args.keep:
            bench.remove_layers()
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(bench.results))
    print(f"\nwhole run: {raw['wall_s']:.0f} s")
    print("\n```json\n" + json.dumps(raw) + "\n```")


if __name__ == "__main__":
    main()
