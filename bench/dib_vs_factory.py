"""Plain DIB against the factory, side by side, in one run on one machine.

    .venv/bin/python bench/dib_vs_factory.py [--release bookworm] [--datastore postgresql]

Plain DIB is PyPI's disk-image-create (the version the factory pins), run in
the factory's builder image (it has DIB's tools, and partition mapping that
works without device-mapper) with the same elements, qcow2 output and the same
mirrors. Each tool keeps its own package cache between its runs, as it would on
a build host. Measured: a cold build, an unchanged rebuild, and a rebuild after
a change to the datastore element. Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FACTORY = str(Path(sys.executable).parent / "factory")


def run(cmd: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    p = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.monotonic() - started


def dib(builder: str, elements_dir: Path, out: Path, cache: Path, env: dict[str, str], elements: list[str],
        qemu_options: str = "compat=1.1") -> float:
    """disk-image-create in a builder container, as a user would run it by hand."""
    envargs = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    cmd = ["docker", "run", "--rm", "--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD", "--cap-add", "SYS_CHROOT",
           "--security-opt", "apparmor=unconfined", "--security-opt", "seccomp=unconfined",
           "--device-cgroup-rule", "b 7:* rwm", "--device-cgroup-rule", "b 259:* rwm", "--device-cgroup-rule", "c 10:237 rwm",
           "-v", "/dev:/dev", "-v", f"{elements_dir}:/elements:ro", "-v", f"{out}:/out", "-v", f"{cache}:/root/.cache/image-create",
           "-e", "ELEMENTS_PATH=/elements", *envargs, builder,
           "disk-image-create", "-a", "amd64", "-o", "/out/dib", "-t", "qcow2", "--qemu-img-options", qemu_options, *elements]
    return run(cmd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--release", default="bookworm")
    ap.add_argument("--datastore", default="postgresql")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from factory.engine.builder import ensure_builder
    from factory.mirrors import host_mirrors
    from factory.trust import host_trust

    builder = ensure_builder(host_trust()).tag
    mirrors = host_mirrors("debian")
    # A native image (the datastore's packages in the image), with the agent
    # release that drives it; DIB gets the same elements and settings.
    agent = "13.0.1"
    target = ["--distro", "debian", "--release", args.release, "--datastore", args.datastore, "--agent-source", f"pypi:{agent}"]
    dib_env = {"DIB_RELEASE": args.release, "GUEST_USERNAME": "trove", "GUEST_LOGDIR": "/var/log/trove",
               "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive", "SERVICE_TYPE": args.datastore, "DATASTORE_MODE": "native",
               "TROVE_AGENT_SOURCE": "pypi", "TROVE_AGENT_VERSION": agent, **mirrors}
    elements = ["debian-minimal", "vm", "cloud-init", "cloud-init-datasources", "openssh-server",
                "debian-guest", f"debian-{args.datastore}"]
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        elements_dir = tmp / "elements"
        shutil.copytree(REPO / "elements", elements_dir)
        dib_out, dib_cache, fac_out = tmp / "dib-out", tmp / "dib-cache", tmp / "factory-out"
        for d in (dib_out, dib_cache, fac_out):
            d.mkdir()
        fenv = {"ELEMENTS_PATH": str(elements_dir)}

        # Cold: no layers of this target, no package caches.
        plan = subprocess.run([FACTORY, "plan", "--as", "json", *target], env={**os.environ, **fenv}, capture_output=True, text=True)
        import json
        base_key = json.loads(plan.stdout)[0]["layers"][0]["key"]
        subprocess.run([FACTORY, "layers", "rm", base_key], capture_output=True)
        state_cache = Path(os.environ.get("FACTORY_STATE_DIR", "/var/lib/factory")) / "dib-cache"
        shutil.rmtree(state_cache, ignore_errors=True)

        d_cold = dib(builder, elements_dir, dib_out, dib_cache, dib_env, elements)
        f_cold = run([FACTORY, "build", *target, "--output", str(fac_out)], env=fenv)
        rows.append(("cold build", d_cold, f_cold))

        d_again = dib(builder, elements_dir, dib_out, dib_cache, {**dib_env}, elements)
        f_again = run([FACTORY, "build", *target, "--output", str(fac_out)], env=fenv)
        rows.append(("unchanged rebuild", d_again, f_again))

        hook = elements_dir / f"debian-{args.datastore}" / "post-install.d" / "99-bench-change"
        hook.write_text("#!/bin/bash\necho changed > /etc/trove/bench-change\n")
        hook.chmod(0o755)
        d_ds = dib(builder, elements_dir, dib_out, dib_cache, dib_env, elements)
        f_ds = run([FACTORY, "build", *target, "--output", str(fac_out)], env=fenv)
        rows.append(("datastore element changed", d_ds, f_ds))

        dib_size = (dib_out / "dib.qcow2").stat().st_size
        fac_size = max(p.stat().st_size for p in fac_out.glob("*.qcow2"))

        # The same change again, both tools compressing with zstd.
        hook.write_text("#!/bin/bash\necho changed-again > /etc/trove/bench-change\n")
        d_z = dib(builder, elements_dir, dib_out, dib_cache, dib_env, elements, "compat=1.1,compression_type=zstd")
        f_z = run([FACTORY, "build", *target, "--output", str(fac_out), "--compression", "zstd"], env=fenv)
        rows.append(("datastore element changed, zstd", d_z, f_z))

    print(f"| step ({args.release}, {args.datastore}) | plain DIB (s) | factory (s) | factory / DIB |")
    print("|---|---:|---:|---:|")
    for name, d, f in rows:
        print(f"| {name} | {d:.1f} | {f:.1f} | {f / d:.2f} |")
    print(f"| qcow2 size (MiB) | {dib_size / 2**20:.0f} | {fac_size / 2**20:.0f} | {fac_size / dib_size:.2f} |")


if __name__ == "__main__":
    main()
