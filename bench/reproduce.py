"""Two cold builds of one target on two engines with empty stores, compared:
the same layers, root tree and disk?

    .venv/bin/python bench/reproduce.py [--release bookworm] [--datastore postgresql] [--json FILE]

Each engine is a fresh dockerd (bench/engines.py: own empty store and
bridge, a route out), given the factory's builder image as a new machine
gets it; each build has its own state folder (empty package caches) and
output folder, and writes tar, raw and qcow2 with --bit-identical, one after
the other. Printed: per layer, both engines' diff digests; the root tree
digest and each format's sha256; `factory diff` of the qcow2 files where
they differ. Exit 0 when everything matches, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engines import SecondEngine  # noqa: E402

FACTORY = str(Path(sys.executable).parent / "factory")


def own_diffs(host: str, keys: list[str]) -> list[list[str]]:
    """The diff digests each layer adds over its parent, read from the engine at `host`."""
    from factory.engine.docker import client
    from factory.store import local
    from factory.stored import layer_tag

    before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    client.cache_clear()
    try:
        return [local.own_diffs(layer_tag(key)) for key in keys]
    finally:
        os.environ.pop("DOCKER_HOST") if before is None else os.environ.update(DOCKER_HOST=before)
        client.cache_clear()


def build(engine: SecondEngine, work: Path, target: list[str]) -> dict:
    state, out = work / "state", work / "out"
    state.mkdir()
    started = time.monotonic()
    run = subprocess.run([FACTORY, "build", *target, "--format", "tar,raw,qcow2", "--bit-identical",
                          "--output", str(out), "--progress", "plain"],
                         env={**os.environ, "DOCKER_HOST": engine.host, "FACTORY_STATE_DIR": str(state)},
                         capture_output=True, text=True)
    (work / "build.log").write_text(run.stderr)
    if run.returncode != 0:
        raise SystemExit(f"the build on {engine.host} failed (exit {run.returncode}); see {work / 'build.log'}")
    manifest_path = Path(run.stdout.strip().splitlines()[-1])
    manifest = json.loads(manifest_path.read_text())
    diffs = own_diffs(engine.host, [l["key"] for l in manifest["layers"]])
    layers = {l["layer"]: {"key": l["key"], "diffs": d} for l, d in zip(manifest["layers"], diffs)}
    return {"seconds": round(time.monotonic() - started, 1), "manifest": str(manifest_path), "layers": layers,
            "tree": manifest.get("tree_sha256"),
            "images": {fmt: {"sha256": i["sha256"], "file": str(manifest_path.parent / i["file"])} for fmt, i in manifest["images"].items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distro", default="debian")
    ap.add_argument("--release", default="bookworm")
    ap.add_argument("--datastore", default="postgresql")
    ap.add_argument("--agent-source", default="pypi:13.0.1")
    ap.add_argument("--datastore-mode", default="native")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the outputs (the engines are always stopped)")
    args = ap.parse_args()
    target = ["--distro", args.distro, "--release", args.release, "--datastore", args.datastore,
              "--agent-source", args.agent_source, "--datastore-mode", args.datastore_mode]
    builder = _builder_tag()
    tmp = Path(tempfile.mkdtemp(prefix="factory-reproduce-", dir="/var/tmp"))
    results = {}
    try:
        for n, name in enumerate(("A", "B")):
            engine = SecondEngine(tmp / f"engine-{name}", bridge=f"factory-repro{n}", subnet=f"172.31.{251 + n}", route_out=True)
            try:
                engine.start(builder)
                work = tmp / name
                work.mkdir()
                results[name] = build(engine, work, target)
                print(f"engine {name}: built in {results[name]['seconds']} s", file=sys.stderr)
            finally:
                engine.stop()
        a, b = results["A"], results["B"]
        same = True
        print("| what | engine A | engine B | same |\n|---|---|---|---|")
        for layer in a["layers"]:
            da, db = a["layers"][layer]["diffs"], b["layers"][layer].get("diffs")
            same &= da == db
            print(f"| {layer} layer {a['layers'][layer]['key'][:12]} diff | {' '.join(d[7:19] for d in da)} | "
                  f"{' '.join(d[7:19] for d in db)} | {'yes' if da == db else 'NO'} |")
        same &= a["tree"] == b["tree"]
        print(f"| root tree | {a['tree'][7:23]} | {b['tree'][7:23]} | {'yes' if a['tree'] == b['tree'] else 'NO'} |")
        for fmt in a["images"]:
            sa, sb = a["images"][fmt]["sha256"], b["images"][fmt]["sha256"]
            same &= sa == sb
            print(f"| {fmt} sha256 | {sa[:16]} | {sb[:16]} | {'yes' if sa == sb else 'NO'} |")
        if a["images"]["qcow2"]["sha256"] != b["images"]["qcow2"]["sha256"]:
            said = subprocess.run([FACTORY, "diff", a["images"]["qcow2"]["file"], b["images"]["qcow2"]["file"]],
                                  capture_output=True, text=True)
            print("\nfactory diff of the qcow2 files:\n" + said.stdout)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0 if same else 1
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)])
        else:
            print(f"kept: {tmp}", file=sys.stderr)


def _builder_tag() -> str:
    """The host engine's builder image (built if missing), given to both engines."""
    from factory.engine.builder import ensure_builder
    from factory.trust import host_trust

    return ensure_builder(host_trust()).tag


if __name__ == "__main__":
    sys.exit(main())
