"""Bad inputs across every command, as a table: each must be refused with
one line per problem, exit 2, no traceback, in under 2 s, before any layer
(no engine call, nothing written). The table serves the test
(tests/unit/test_bad_input.py) and the sweep a reviewer runs
(`python -m tests.bad_inputs`, a table of figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FACTORY = str(Path(sys.executable).parent / "factory")
TARGET = ["--distro", "debian", "--datastore", "postgresql", "--agent-source", "pypi:13.0.1"]
LONG = "x" * 300


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # @DIR@ stands for the case's scratch folder
    says: str  # what the error line must contain


def _c(name: str, says: str, *args: str) -> Case:
    return Case(name, args, says)


CASES = [
    # plan: every target value
    _c("unknown release", "valid releases: bookworm", "plan", *TARGET, "--release", "sid9"),
    _c("unknown distro", "valid distros", "plan", "--distro", "gentoo", "--datastore", "postgresql"),
    _c("unknown datastore", "valid datastores", "plan", "--distro", "debian", "--datastore", "oracle"),
    _c("unknown arch", "valid: amd64", "plan", *TARGET, "--arch", "sparc"),
    _c("unknown format", "valid: qcow2", "plan", *TARGET, "--format", "qcow3"),
    _c("image size 0", "1G floor", "plan", *TARGET, "--image-size", "0"),
    _c("image size 0.1G", "1G floor", "plan", *TARGET, "--image-size", "0.1G"),
    _c("image size 512M", "1G floor", "plan", *TARGET, "--image-size", "512M"),
    _c("image size not a size", "use e.g. 3G", "plan", *TARGET, "--image-size", "big"),
    _c("datastore version 99", "ships postgresql 15", "plan", *TARGET, "--datastore-version", "99"),
    _c("datastore version, ubuntu", "ships postgresql 16", "plan", "--distro", "ubuntu", "--datastore", "postgresql",
       "--agent-source", "pypi:13.0.1", "--release", "noble", "--datastore-version", "12"),
    _c("user name with space and non-ASCII", "GUEST_USERNAME=trove", "plan", *TARGET, "--env", "GUEST_USERNAME=trøve admin"),
    _c("user name uppercase", "GUEST_USERNAME=trove", "plan", *TARGET, "--env", "GUEST_USERNAME=Trove"),
    _c("user name 40 chars", "at most 32", "plan", *TARGET, "--env", f"GUEST_USERNAME={'t' * 40}"),
    _c("log dir relative", "GUEST_LOGDIR=/var/log/trove", "plan", *TARGET, "--env", "GUEST_LOGDIR=var/log/trove"),
    _c("log dir with space", "GUEST_LOGDIR=/var/log/trove", "plan", *TARGET, "--env", "GUEST_LOGDIR=/var/log/my logs"),
    _c("packages: a FIFO", "is a FIFO", "plan", *TARGET, "--env", "DATASTORE_PKG_LOCATION=@DIR@/fifo"),
    _c("packages: a device", "character device", "plan", *TARGET, "--env", "DATASTORE_PKG_LOCATION=/dev/null"),
    _c("packages: an empty folder", "empty folder", "plan", *TARGET, "--env", "DATASTORE_PKG_LOCATION=@DIR@/empty"),
    _c("packages: missing", "does not exist", "plan", *TARGET, "--env", "DATASTORE_PKG_LOCATION=@DIR@/nothing"),
    _c("SSH_DIR a FIFO", "is a FIFO", "plan", *TARGET, "--env", "SSH_DIR=@DIR@/fifo"),
    _c("--env without =", "KEY=VALUE", "plan", *TARGET, "--env", "GUEST_USERNAME"),
    _c("--env bad name", "not a valid variable name", "plan", *TARGET, "--env", "1BAD=x"),
    _c("--env derived name", "set GUEST_LOGDIR instead", "plan", *TARGET, "--env", "ESCAPED_GUEST_LOGDIR=x"),
    _c("controller IP", "not an IP address", "plan", *TARGET, "--env", "CONTROLLER_IP=controller"),
    _c("agent source scheme", "agent", "plan", "--distro", "debian", "--datastore", "postgresql", "--agent-source", "ftp:1"),
    _c("agent source path missing", "no such folder", "plan", "--distro", "debian", "--datastore", "postgresql",
       "--agent-source", "path:@DIR@/nothing"),
    _c("datastore mode", "native or container", "plan", *TARGET, "--datastore-mode", "hybrid"),
    _c("unknown element", "ELEMENTS_PATH", "plan", *TARGET, "--element", "no-such-element"),
    _c("plan --as", "table or json", "plan", *TARGET, "--as", "yaml"),
    _c("config missing", "not found", "plan", "--config", "@DIR@/nothing.yaml"),
    _c("config not YAML", "not valid YAML", "plan", "--config", "@DIR@/bad.yaml"),
    _c("config unknown key", "unknown setting", "plan", "--config", "@DIR@/unknown.yaml"),
    _c("output name 300 chars", "at most 255", "plan", *TARGET, "--output", f"@DIR@/{LONG}"),
    _c("output under a file", "is a file", "plan", *TARGET, "--output", "@DIR@/text.qcow2/out"),
    _c("output is a file", "is a file", "plan", *TARGET, "--output", "@DIR@/text.qcow2"),
    _c("log format", "console or json", "--log-format=xml", "plan", *TARGET),
    _c("plan --emit unknown", "--emit 'yaml' is not known", "plan", "--config", "@DIR@/matrix.yaml", "--emit", "yaml"),
    _c("plan --emit gitlab, no cache", "give --cache-to", "plan", "--config", "@DIR@/matrix.yaml", "--emit", "gitlab"),
    _c("plan --emit without --config", "give --config", "plan", *TARGET, "--emit", "json"),
    _c("plan --runner unknown", "--runner 'vm' is not known", "plan", "--config", "@DIR@/matrix.yaml", "--emit", "github",
       "--runner", "vm", "--cache-to", "oci://127.0.0.1:5000/factory/layers"),
    _c("plan --emit with --env", "GUEST_USERNAME (--env) would not reach the jobs", "plan", "--config", "@DIR@/matrix.yaml",
       "--emit", "json", "--env", "GUEST_USERNAME=bob"),
    _c("plan --emit and --as", "give one of them", "plan", "--config", "@DIR@/matrix.yaml", "--emit", "json", "--as", "json"),
    # build: its own options, and many problems at once
    _c("build --target unknown", "no such target", "build", "--config", "@DIR@/matrix.yaml", "--target", "debian-sid-x"),
    _c("build --layer not a key", "not a layer key", "build", *TARGET, "--layer", "xyz"),
    _c("build --layer with --verify", "assembles nothing", "build", *TARGET, "--layer", "abcd1234", "--verify"),
    _c("build --progress unknown", "--progress 'fancy' is not known", "build", *TARGET, "--progress", "fancy"),
    _c("compression", "none, zlib, zstd", "build", *TARGET, "--compression", "lzma"),
    _c("refresh unknown layer", "no such layer", "build", *TARGET, "--refresh", "kernel"),
    _c("cache oci:// empty", "oci://127.0.0.1:5000/factory/layers", "build", *TARGET, "--cache-from", "oci://"),
    _c("cache s3:// empty", "s3://my-bucket/factory/layers", "build", *TARGET, "--cache-from", "s3://"),
    _c("cache http URL", "e.g. oci://", "build", *TARGET, "--cache-from", "http://cache.invalid/x"),
    _c("cache uppercase repo", "lowercase repository", "build", *TARGET, "--cache-to", "oci://127.0.0.1:5000/Layers"),
    _c("cache with credentials", "carries credentials", "build", *TARGET, "--cache-from", "s3://key:secret@bucket/x"),
    _c("publish destination", "glance, s3://", "build", *TARGET, "--publish", "ftp://host/x"),
    _c("visibility", "private, shared", "build", *TARGET, "--visibility", "everyone"),
    _c("glance property", "KEY=VALUE", "build", *TARGET, "--glance-property", "novalue"),
    _c("output with ':' and 300 chars", "at most 255", "build", *TARGET, "--output", f"@DIR@/a:b/{LONG}"),
    _c("build, five problems at once", "1G floor", "build", *TARGET, "--release", "sid9", "--image-size", "0",
       "--compression", "lzma", "--env", "GUEST_USERNAME=trøve admin", "--cache-from", "s3://"),
    _c("build datastore version 13", "--datastore-version 15", "build", *TARGET, "--release", "bookworm",
       "--datastore-version", "13", "--format", "tar", "--output", "@DIR@/out"),
    # verify: inputs that are not what they claim
    _c("verify 0-byte image", "empty (0 bytes)", "verify", "@DIR@/empty.qcow2", "--datastore", "postgresql"),
    _c("verify text as qcow2", "reads it as raw", "verify", "@DIR@/text.qcow2", "--datastore", "postgresql"),
    _c("verify text as raw", "without a partition table", "verify", "@DIR@/text.raw", "--datastore", "postgresql"),
    _c("verify a FIFO", "not a regular file", "verify", "@DIR@/fifo", "--datastore", "postgresql"),
    _c("verify missing image", "No such file", "verify", "@DIR@/nothing.qcow2", "--datastore", "postgresql"),
    _c("verify manifest of a text file", "reads it as raw", "verify", "@DIR@/art/text-1.manifest.json"),
    _c("verify qcow2 with wrong sha256", "its manifest says", "verify", "@DIR@/art/bad-1.manifest.json"),
    _c("verify garbage manifest", "not a manifest", "verify", "@DIR@/garbage.manifest.json"),
    _c("verify accel", "auto, kvm or tcg", "verify", "@DIR@/text.qcow2", "--accel", "xen"),
    _c("verify transport without trove", "go with --trove", "verify", "@DIR@/text.qcow2", "--transport-url", "rabbit://x"),
    # publish
    _c("publish text as qcow2", "reads it as raw", "publish", "@DIR@/art/text-1.qcow2", "--to", "@DIR@/published"),
    _c("publish qcow2 with wrong sha256", "its manifest says", "publish", "@DIR@/art/bad-1.qcow2", "--to", "@DIR@/published"),
    _c("publish without manifest", "no manifest beside", "publish", "@DIR@/text.qcow2", "--to", "@DIR@/published"),
    _c("publish missing", "not found", "publish", "@DIR@/nothing.qcow2", "--to", "@DIR@/published"),
    _c("publish destination", "glance, s3://", "publish", "@DIR@/art/text-1.qcow2", "--to", "ftp://host/x"),
    # layers
    _c("prune age", "e.g. 30d", "layers", "prune", "--older-than", "soon"),
    _c("pull from oci://", "oci://127.0.0.1:5000/factory/layers", "layers", "pull", "abc", "--from", "oci://"),
    _c("ls remote s3://", "s3://my-bucket/factory/layers", "layers", "ls", "--remote", "s3://"),
]


def _artifact(folder: Path, stem: str, image: bytes, recorded_sha: str | None = None) -> None:
    """An image and a manifest naming it, as factory build writes them."""
    import hashlib

    (folder / f"{stem}.qcow2").write_bytes(image)
    sha = recorded_sha or hashlib.sha256(image).hexdigest()
    (folder / f"{stem}.qcow2.sha256").write_text(f"{sha}  {stem}.qcow2\n")
    man = {"schema": 1, "assembly_key": "0" * 64, "layers": [], "guest_agent": {},
           "target": {"distro": "debian", "release": "bookworm", "datastore": "postgresql", "env": {}},
           "images": {"qcow2": {"file": f"{stem}.qcow2", "bytes": len(image), "sha256": sha}}}
    (folder / f"{stem}.manifest.json").write_text(json.dumps(man))


def scratch(folder: Path) -> Path:
    """The files the cases name."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo")
    (folder / "empty").mkdir()
    (folder / "empty.qcow2").write_bytes(b"")
    (folder / "text.qcow2").write_text("not an image\n" * 100)
    (folder / "text.raw").write_text("not an image\n" * 100)
    (folder / "garbage.manifest.json").write_text("{not json")
    (folder / "bad.yaml").write_text("targets: [distro: {\n")
    (folder / "unknown.yaml").write_text("targets:\n  - {distro: debian, datastore: postgresql, colour: blue}\n")
    (folder / "matrix.yaml").write_text("targets:\n  - {distro: debian, datastore: postgresql, agent-source: 'pypi:13.0.1'}\n")
    art = folder / "art"
    art.mkdir()
    _artifact(art, "text-1", b"not an image\n" * 100)
    qcow2 = art / "made.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "64M"], check=True)
    _artifact(art, "bad-1", qcow2.read_bytes(), recorded_sha="f" * 64)
    qcow2.unlink()
    return folder


@dataclass
class Outcome:
    code: int
    seconds: float
    stderr: str

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


def run(case: Case, folder: Path, state: Path) -> Outcome:
    args = [a.replace("@DIR@", str(folder)) for a in case.args]
    env = {**os.environ, "FACTORY_STATE_DIR": str(state)}
    started = time.monotonic()
    p = subprocess.run([FACTORY, *args], capture_output=True, text=True, env=env, timeout=60, cwd=folder)
    return Outcome(p.returncode, time.monotonic() - started, p.stderr)


def left_behind(folder_before: set[str], folder: Path, state: Path) -> list[str]:
    """What a refused command left: new files in the scratch folder, work
    folders, records or logs in the state folder."""
    now = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    found = sorted(now - folder_before)
    for sub in ("work", "owned", "logs"):
        if (state / sub).is_dir():
            found += [str(p) for p in (state / sub).iterdir()]
    return found


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="factory-bad-inputs-") as tmp:
        folder, state = scratch(Path(tmp) / "cases"), Path(tmp) / "state"
        before = {str(p.relative_to(folder)) for p in folder.rglob("*")}
        good = 0
        print(f"{'case':40} {'command':8} {'exit':>4} {'s':>5}  first line")
        for case in CASES:
            out = run(case, folder, state)
            lines = out.error_lines()
            ok = (out.code == 2 and lines and "Traceback" not in out.stderr and out.seconds < 2.0
                  and any(case.says in l for l in lines) and not left_behind(before, folder, state))
            good += bool(ok)
            first = lines[0][7:110] if lines else out.stderr.strip().splitlines()[-1:]
            print(f"{case.name[:40]:40} {case.args[0].lstrip('-')[:8]:8} {out.code:>4} {out.seconds:5.2f}  "
                  f"{'' if ok else 'FAIL '}{first}")
        print(f"{good} of {len(CASES)} refused as they must be")
        return 0 if good == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
