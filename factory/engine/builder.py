"""The builder image: DIB and the tools its outside phases need.

Tagged by a hash of its recipe (Containerfile, the base's identity, DIB
version), so a second `factory builder build` finds it at once, and two
machines that build it from one recipe give it the same tag. Layer keys name
the builder by that tag, never by its image id: the image's bytes differ from
machine to machine (package downloads, timestamps) while what it can do does
not, and CI runners on different machines must share layers. Where no
registry answers, the base is bootstrapped from the Debian archive
(mmdebstrap -> import), and its identity is that recipe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from factory import CONTAINERS_DIR, log
from factory.elements import dib_version
from factory.engine.docker import buildkit_cli, client, image_exists
from factory.errors import FactoryError
from factory.mirrors import host_mirrors
from factory.trust import Trust

BUILDER_REPO = "factory-builder"
BOOTSTRAP_REPO = "factory-bootstrap"
DEFAULT_BASE = "debian:bookworm"
CONTAINERFILE = CONTAINERS_DIR / "builder" / "Containerfile"

_log = log.get("builder")


@dataclass(frozen=True)
class BuilderImage:
    tag: str
    id: str
    built: bool  # False when an existing image was reused


def _short(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def bootstrap_base(suite: str = "bookworm", workdir: Path | None = None) -> str:
    """A minimal Debian image made from the archive, for hosts without a registry."""
    mirror = host_mirrors("debian").get("DIB_DISTRIBUTION_MIRROR", "")
    tag = f"{BOOTSTRAP_REPO}:debian-{suite}-{_short(f'{suite}|{mirror}|minbase')}"
    if image_exists(tag):
        return tag
    tool = shutil.which("mmdebstrap")
    if not tool:
        raise FactoryError("no container registry answers and mmdebstrap is missing; run ./factory.sh once (it installs it) or apt-get install mmdebstrap")
    _log.info("bootstrapping the builder's base from the Debian archive", suite=suite, mirror=mirror or "(mmdebstrap default)")
    with tempfile.TemporaryDirectory(prefix="factory-bootstrap-", dir=workdir) as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = [tool, "--variant=minbase", "--quiet", suite, str(tarball)]
        if mirror:
            cmd.append(mirror)
        started = time.monotonic()
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise FactoryError(f"mmdebstrap failed: {tail[0]}")
        repo, _, version = tag.partition(":")
        client().api.import_image_from_file(str(tarball), repository=repo, tag=version)
        _log.info("base image bootstrapped", image=tag, seconds=round(time.monotonic() - started, 1))
    return tag


def resolve_base(base: str | None, workdir: Path | None = None) -> str:
    """The builder's base image: given, present, pulled, or bootstrapped."""
    wanted = base or os.environ.get("FACTORY_BUILDER_BASE") or DEFAULT_BASE
    if wanted == "bootstrap":
        return bootstrap_base(workdir=workdir)
    if image_exists(wanted):
        return wanted
    try:
        client().images.pull(wanted)
        return wanted
    except docker.errors.APIError as e:
        if base:  # the user named it: do not silently substitute another
            raise FactoryError(f"cannot pull builder base {wanted}: {e.explanation}; pass --base bootstrap to build it from the Debian archive") from e
        _log.debug("no container registry answered; using a bootstrapped base", wanted=wanted)
        return bootstrap_base(workdir=workdir)


def base_identity(ref: str, repo_digests: list[str], image_id: str) -> str:
    """What names a base image the same on every machine (pure): the
    bootstrap recipe its tag encodes, a registry digest, else (an image only
    this host has) its id."""
    if ref.startswith(f"{BOOTSTRAP_REPO}:"):
        return ref
    return sorted(repo_digests)[0] if repo_digests else image_id


def builder_tag(base: str) -> str:
    inputs = "|".join([CONTAINERFILE.read_text(), base, dib_version()])
    return f"{BUILDER_REPO}:{_short(inputs)}"


def ensure_builder(trust: Trust, base: str | None = None, verbose: bool = False, workdir: Path | None = None) -> BuilderImage:
    base_ref = resolve_base(base, workdir)
    base_image = client().images.get(base_ref)
    base_id = base_image.id
    tag = builder_tag(base_identity(base_ref, base_image.attrs.get("RepoDigests") or [], base_id))
    try:
        return BuilderImage(tag=tag, id=client().images.get(tag).id, built=False)
    except docker.errors.ImageNotFound:
        pass
    cli = buildkit_cli()
    cmd = [
        cli, "build", "--progress=plain", "-f", str(CONTAINERFILE),
        "--build-arg", f"BASE={base_ref}",
        "--build-arg", f"DIB_VERSION={dib_version()}",
        "--label", f"org.factory.builder.base={base_id}",
        "--label", f"org.factory.builder.dib={dib_version()}",
        "-t", tag,
    ]
    if trust.ca_bundle:
        cmd += ["--secret", f"id=ca,src={trust.ca_bundle}"]
    for name, value in trust.proxies.items():
        cmd += ["--build-arg", f"{name}={value}"]
    cmd.append(str(CONTAINERFILE.parent))
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    _log.info("building the builder image", image=tag, base=base_ref)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    assert proc.stdout
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if verbose:
            print(line, end="", flush=True)
    if proc.wait() != 0:
        detail = "\n".join(tail)
        raise FactoryError(f"builder image build failed (last lines below); rerun with -v for the whole log\n{detail}")
    image = client().images.get(tag)
    _log.info("builder image ready", image=tag, seconds=round(time.monotonic() - started, 1))
    return BuilderImage(tag=tag, id=image.id, built=True)
