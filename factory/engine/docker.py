"""The container engine, through the Docker Engine API (docker SDK).

Podman's Docker-compatible socket answers the same calls; nothing here uses a
Docker-only endpoint.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import docker
from docker.errors import DockerException

from factory.errors import FactoryError, Unavailable


@functools.lru_cache(maxsize=1)
def client() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=600)
        c.ping()
    except DockerException as e:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise Unavailable(
            f"no container engine answers at {host}; start dockerd (./factory.sh does) or set DOCKER_HOST"
        ) from e
    return c


def image_exists(ref: str) -> bool:
    try:
        client().images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def buildkit_cli() -> str:
    """A docker CLI that can run a BuildKit build (needed for build secrets).

    Docker CLIs before 23 carry BuildKit themselves; later ones need buildx."""
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    for cli in dict.fromkeys(candidates):
        if subprocess.run([cli, "buildx", "version"], capture_output=True).returncode == 0:
            return cli
        out = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True)
        major = out.stdout.strip().split(".")[0]
        if major.isdigit() and int(major) < 23:
            return cli
    raise FactoryError("no docker CLI with BuildKit found; install docker.io (Debian) or the buildx plugin")


def run_output(image: str, command: list[str], **kwargs) -> bytes:
    """Run a command in a throw-away container and return its stdout.

    The SDK's `containers.run(remove=True)` removes the container before it
    reads the streamed output, which comes back empty on a busy engine."""
    container = client().containers.create(image, command, entrypoint=[], **kwargs)
    try:
        container.start()
        status = container.wait()["StatusCode"]
        out = container.logs(stdout=True, stderr=False)
        if status != 0:
            err = container.logs(stdout=False, stderr=True)
            raise docker.errors.ContainerError(container, status, command, image, err)
        return out
    finally:
        container.remove(force=True)


def registry_answers(ref: str) -> bool:
    """The image's registry answers (a manifest look-up, no download). An
    image of that name in the local store does not count: it may be one built
    here from another distro's archive under the same tag."""
    from factory import log

    try:
        client().api.inspect_distribution(ref)
        return True
    except docker.errors.APIError as e:
        log.get("containers").debug("no registry answers", image=ref,
                                    reason=str(getattr(e, "explanation", "") or e).splitlines()[0])
        return False
