"""Kill a factory run at a chosen moment, then check that the next run left
nothing of it. The host is shared (other people's builds, containers, qemu
and brokers run at the same time), so leftovers are what the killed process
owned: its records in the state folder, containers labelled with its PID,
loop devices backed by its folders, files in its output folder; never a
global count. Used by tests/engine/test_chaos.py and `python -m tests.chaos`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from factory import owners

FACTORY = str(Path(sys.executable).parent / "factory")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@dataclass(frozen=True)
class Moment:
    """When to kill: after the first log event matching `event` (and its
    fields), plus a delay drawn from `delay`."""
    name: str
    command: str  # build, verify or publish
    event: str
    fields: tuple[tuple[str, str], ...] = ()
    delay: tuple[float, float] = (0.0, 0.0)


MOMENTS = [
    Moment("datastore layer: extra-data", "build", "phase", (("layer", "datastore"), ("phase", "extra-data"))),
    Moment("datastore layer: install", "build", "phase", (("layer", "datastore"), ("phase", "install")), (1, 20)),
    Moment("datastore layer: post-install", "build", "phase", (("layer", "datastore"), ("phase", "post-install"))),
    Moment("datastore layer: commit", "build", "phase", (("layer", "datastore"), ("phase", "post-install")), (2, 8)),
    Moment("assembly", "build", "assembling", (), (0, 15)),
    Moment("convert", "build", "step timed", (("step", "unmount"),), (0, 5)),
    Moment("verify boot", "verify", "booting", (), (1, 20)),
    Moment("publish upload", "publish", "publishing", (), (0, 0.3)),
]


@dataclass
class Round:
    moment: str
    signal: str
    pid: int
    code: int | None
    seconds: float
    leftovers: list[str]


def _matches(line: str, moment: Moment) -> bool:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    return event.get("event") == moment.event and all(str(event.get(k)) == v for k, v in moment.fields)


def owned_by(pid: int, engine) -> list[str]:
    """What the process `pid` still holds: records, containers, loop devices."""
    found = [f"record {r.path.name} ({r.kind} {r.what})" for r in owners.records() if r.pid == pid]
    found += [f"container {c.short_id}" for c in
              engine.containers.list(all=True, filters={"label": f"org.factory.pid={pid}"})]
    return found


def folders_of(pid: int) -> list[Path]:
    return [Path(r.what) for r in owners.records() if r.pid == pid and r.kind == owners.FOLDER]


def loops_backed_by(folders: list[Path]) -> list[str]:
    listing = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], capture_output=True, text=True)
    loops = json.loads(listing.stdout or "{}").get("loopdevices", [])
    return [l["name"] for l in loops if any(str(f) in str(l.get("back-file") or "") for f in folders)]


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def _product(output: Path, name: str, code: int) -> bool:
    """What a killed run may leave in its output folder: an artifact it
    finished (manifest, image, checksum: the manifest is written last) and
    verify's console log, which it writes beside the image by design."""
    if code == 0 or name.endswith(".console.log"):
        return True
    stem = name.split(".", 1)[0]
    return not name.startswith(".") and (output / f"{stem}.manifest.json").exists()


def kill_round(args: list[str], moment: Moment, sig: str, rng: random.Random, engine, output: Path,
               env: dict[str, str] | None = None, timeout: float = 3600) -> Round:
    """Run `factory ARGS`, kill it at `moment` with `sig`, then run
    `factory gc` (the next run) and list what is left of the killed run."""
    before = listing(output)
    started = time.monotonic()
    proc = subprocess.Popen([FACTORY, "--log-format", "json", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    reached = threading.Event()

    def watch():
        for line in proc.stderr:
            if _matches(line, moment):
                reached.set()

    threading.Thread(target=watch, daemon=True).start()
    while not reached.wait(1):
        if proc.poll() is not None or time.monotonic() - started > timeout:
            proc.kill()
            raise AssertionError(f"{' '.join(args[:1])} ended or timed out before '{moment.name}' (exit {proc.returncode})")
    time.sleep(rng.uniform(*moment.delay))
    held = folders_of(proc.pid)
    processes = [r for r in owners.records() if r.pid == proc.pid and r.kind == owners.PROCESS]
    proc.send_signal(SIGNALS[sig])
    code = proc.wait(300)
    subprocess.run([FACTORY, "gc"], capture_output=True, env={**os.environ, **(env or {})}, check=True)
    left = owned_by(proc.pid, engine)
    left += [f"folder {f}" for f in held if f.exists()]
    left += [f"loop {l}" for l in loops_backed_by(held)]
    left += [f"process {r.what}" for r in processes if owners.alive(int(r.what), r.thing_started)]
    left += [f"output file {n}" for n in sorted(listing(output) - before) if not _product(output, n, code)]
    return Round(moment.name, sig, proc.pid, code, time.monotonic() - started, left)


def _soak(rounds: int, seed: int, root: Path) -> int:
    """`python -m tests.chaos [ROUNDS]`: every moment killed with SIGKILL
    once, then random moments and signals; after each, `factory gc` and a
    count of what the killed run left; at the end a build that must give a
    sound image. Prints one line a round and returns the number of rounds
    that left something."""
    import docker
    import hashlib
    import shutil
    import uuid

    from tests.conftest import NATIVE_AGENT, REPO

    engine = docker.from_env()
    target = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT]
    rng = random.Random(seed)

    def fresh_elements(folder: Path) -> dict[str, str]:
        # A changed datastore element: a fresh datastore layer to kill during.
        shutil.copytree(REPO / "elements" / "debian-postgresql", folder / "debian-postgresql")
        readme = folder / "debian-postgresql" / "README.rst"
        readme.write_text(readme.read_text() + f"\nA local change ({uuid.uuid4()}).\n")
        return {"ELEMENTS_PATH": str(folder)}

    def build(out: Path, env=None) -> Path:
        p = subprocess.run([FACTORY, "build", *target, "--output", str(out)], capture_output=True, text=True,
                           env={**os.environ, **(env or {})})
        if p.returncode:
            raise SystemExit(f"build failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
        return out / p.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]

    manifest = build(root / "built")
    plan = [(m, "SIGKILL") for m in MOMENTS]
    plan += [(rng.choice(MOMENTS), rng.choice(list(SIGNALS))) for _ in range(max(0, rounds - len(plan)))]
    dirty = 0
    for i, (moment, sig) in enumerate(plan[:rounds]):
        out = root / f"round-{i}"
        out.mkdir()
        env = fresh_elements(out / "elements") if moment.name.startswith("datastore layer") else {}
        if moment.command == "build":
            args, watched = ["build", *target, "--output", str(out / "artifact")], out / "artifact"
        elif moment.command == "verify":
            args, watched = ["verify", str(manifest), "--timeout", "600"], manifest.parent
        else:
            args, watched = ["publish", str(manifest), "--to", str(out / "artifact")], out / "artifact"
        r = kill_round(args, moment, sig, rng, engine, watched, env)
        dirty += bool(r.leftovers)
        print(f"{i + 1:2d} {moment.name:32s} {sig:8s} exit {r.code!s:4s} {r.seconds:6.1f}s "
              f"leftovers: {r.leftovers or 'none'}", flush=True)
    final = build(root / "final", fresh_elements(root / "final-elements"))
    man = json.loads(final.read_text())
    image = final.parent / man["images"]["qcow2"]["file"]
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    print(f"final build: qemu-img check exit {check.returncode}; sha256 "
          f"{'matches' if digest == man['images']['qcow2']['sha256'] else 'DIFFERS from'} the manifest")
    return dirty + (check.returncode != 0) + (digest != man["images"]["qcow2"]["sha256"])


if __name__ == "__main__":
    import tempfile

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory(prefix="factory-chaos-") as folder:
        sys.exit(1 if _soak(count, 18, Path(folder)) else 0)
