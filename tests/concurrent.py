"""`python -m tests.concurrent [N]`: N builds of one target started at once
on this host, into one output folder, as N CI jobs on one runner would.
Each layer must be built once (the others wait and reuse it), the artifact
assembled once, every build must succeed and name the same manifest, and
that image must pass `qemu-img check` and match its checksum. Prints what
each build did; exits non-zero on any failure. (Too slow for CI's budget:
the suite runs two concurrent builds in tests/engine/test_layers.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import FACTORY, NATIVE_AGENT, Run, edited_element

TARGET = ["--distro", "debian", "--release", "bookworm", "--datastore", "postgresql", *NATIVE_AGENT]


def main(count: int) -> int:
    with tempfile.TemporaryDirectory(prefix="factory-concurrent-") as folder:
        root = Path(folder)
        env = {**os.environ, "ELEMENTS_PATH": str(edited_element(root, "debian-postgresql"))}
        out = root / "out"
        started = time.monotonic()
        procs = [subprocess.Popen([FACTORY, "--log-format", "json", "build", *TARGET, "--output", str(out)],
                                  env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(count)]
        runs = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=3600)
            runs.append(Run(p.returncode, stdout, stderr))
        seconds = time.monotonic() - started
        problems = []
        for i, r in enumerate(runs):
            assembled = any(e.get("event") == "assembling" for e in r.events())
            print(f"build {i + 1}: exit {r.returncode}, layers {r.layer_states()}, "
                  f"{'assembled' if assembled else 'found the artifact'}")
            if r.returncode:
                problems.append(f"build {i + 1} failed: {r.stderr[-1500:]}")
        manifests = {r.stdout.strip().splitlines()[-1] for r in runs if r.returncode == 0 and r.stdout.strip()}
        for layer in ("base", "guest", "datastore"):
            built = sum(r.layer_states().get(layer) == "built" for r in runs)
            if built > 1:
                problems.append(f"{layer} layer built {built} times")
        assemblies = sum(any(e.get("event") == "assembling" for e in r.events()) for r in runs)
        if assemblies != 1:
            problems.append(f"artifact assembled {assemblies} times")
        if len(manifests) != 1:
            problems.append(f"the builds named {len(manifests)} different manifests: {manifests}")
        else:
            manifest = Path(manifests.pop())
            man = json.loads(manifest.read_text())
            image = manifest.parent / man["images"]["qcow2"]["file"]
            check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
            same = hashlib.sha256(image.read_bytes()).hexdigest() == man["images"]["qcow2"]["sha256"]
            print(f"artifact {image.name}: qemu-img check exit {check.returncode}, sha256 "
                  f"{'matches' if same else 'DIFFERS from'} the manifest")
            if check.returncode or not same:
                problems.append("the artifact is not sound")
            stray = [p.name for p in out.iterdir() if p.name.startswith(".")]
            if stray:
                problems.append(f"partial files left in the output folder: {stray}")
        print(f"{count} concurrent builds in {seconds:.0f} s; " + ("; ".join(problems) if problems else "all sound"))
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
