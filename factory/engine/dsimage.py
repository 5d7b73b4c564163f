"""Build a datastore container image from the distro archive: mmdebstrap
makes the root (the recipe's packages, its bin/ files, its setup.sh run in
the root), and the root is loaded into the engine as a one-layer image under
its key, with the recipe's config and the store's labels. A failed build
leaves no image; the image appears under its key only when complete, and
only then gets the tag Trove asks for.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import docker

from factory import log
from factory.engine.docker import client
from factory.errors import BuildFailed, Unavailable
from factory.hashing import file_hash
from factory.recipes import IMAGE_LAYER, ImagePlan
from factory.stored import LABEL, layer_tag

_log = log.get("dsimage")
# Documentation, manual pages and translations are not needed in a server
# image (copyright files are kept); apt's lists and caches mmdebstrap drops.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias",
)


def labels(plan: ImagePlan) -> dict[str, str]:
    """The local store's labels (as a layer's), so `factory layers` and the
    remote caches handle the image like any layer."""
    return {
        f"{LABEL}.key": plan.key,
        f"{LABEL}.layer": IMAGE_LAYER,
        f"{LABEL}.target": plan.target,
        f"{LABEL}.parent": "",
        f"{LABEL}.elements": " ".join(f.name for f in plan.recipe.folders),
        f"{LABEL}.inputs": plan.inputs.canonical(),
        f"{LABEL}.image": plan.recipe.ref,
    }


def mmdebstrap_command(plan: ImagePlan, tarball: Path, keyring: Path | None) -> list[str]:
    recipe = plan.recipe
    cmd = ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=tar", f"--arch={plan.inputs.arch}",
           f"--include={','.join(recipe.packages)}", *(f"--dpkgopt={o}" for o in DPKG_OPTIONS)]
    if keyring is not None:
        cmd.append(f"--keyring={keyring}")
    for folder in recipe.folders:
        tools = sorted(p for p in (folder / "bin").glob("*") if p.is_file())
        if tools:
            cmd.append("--customize-hook=copy-in " + " ".join(shlex.quote(str(p)) for p in tools) + " /usr/local/bin")
        if (folder / "setup.sh").is_file():
            cmd += [f"--customize-hook=copy-in {shlex.quote(str(folder / 'setup.sh'))} /tmp",
                    f'--customize-hook=chroot "$1" env VERSION={shlex.quote(recipe.version)} sh /tmp/setup.sh',
                    '--customize-hook=rm "$1/tmp/setup.sh"']
    return [*cmd, plan.inputs.release, str(tarball), *plan.inputs.sources]


def image_config(plan: ImagePlan, diff_id: str, created: str) -> bytes:
    config = {
        "architecture": plan.inputs.arch,
        "os": "linux",
        "created": created,
        "config": {**plan.recipe.config, "Labels": labels(plan)},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"factory: mmdebstrap {plan.inputs.release} {' '.join(plan.recipe.packages)}"}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def build_image(plan: ImagePlan, workroot: Path, keyring: Path | None = None) -> float:
    """Make the image of `plan` (factory-layer:<key>); returns seconds taken."""
    from factory.store.s3 import load_archive

    if not shutil.which("mmdebstrap"):
        raise Unavailable("mmdebstrap is missing; run ./factory.sh once (it installs it) or apt-get install mmdebstrap")
    started = time.monotonic()
    workroot.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"image-{plan.key[:12]}-", dir=workroot) as tmp:
        tarball = Path(tmp) / "root.tar"
        cmd = mmdebstrap_command(plan, tarball, keyring)
        _log.info("building the datastore image from the distro archive", image=plan.recipe.ref, key=plan.key[:16],
                  packages=" ".join(plan.recipe.packages))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
            raise BuildFailed(f"building the {plan.recipe.ref} image failed (mmdebstrap); last lines:\n{tail}")
        diff_id = "sha256:" + file_hash(tarball)
        created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        config = image_config(plan, diff_id, created)
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        replaced = _image_id(layer_tag(plan.key))  # a rebuild (--refresh) moves the tags
        for event in client().api.load_image(load_archive(plan.key, digest, config, [diff_id], {diff_id: tarball})):
            if "error" in event:
                raise BuildFailed(f"the engine refused the {plan.recipe.ref} image: {event['error']}")
    if tag(plan) != replaced and replaced:
        try:
            client().images.remove(replaced)
        except docker.errors.APIError as e:  # a container still uses it: it goes with the container
            _log.info("the replaced image stays while it is in use", image=replaced[:19], reason=str(e.explanation))
    seconds = time.monotonic() - started
    _log.info("datastore image built", image=plan.recipe.ref, key=plan.key[:16], seconds=round(seconds, 1))
    return seconds


def _image_id(ref: str) -> str | None:
    try:
        return client().images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def tag(plan: ImagePlan) -> str:
    """Name the stored image as the agent asks for it; returns the image id."""
    image = client().images.get(layer_tag(plan.key))
    name, _, version = plan.recipe.ref.rpartition(":")
    image.tag(name, version)
    return image.id
