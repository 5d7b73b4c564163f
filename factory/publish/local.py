"""Publish to a local folder (the default): the same layout as the object
stores, every file written under a .part name and renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path

from factory import owners
from factory.publish import Options, Published, failure, stream, targets
from factory.publish.artifact import Artifact

_CHUNK = 8 << 20


def _same_image(dest: Path, checksum: Path, artifact: Artifact) -> bool:
    if not dest.exists() or dest.stat().st_size != artifact.bytes or not checksum.exists():
        return False
    return checksum.read_text().split()[:1] == [artifact.sha256]


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.rename(path)


def publish(artifact: Artifact, target: targets.Directory, opts: Options) -> Published:
    folder = target.path.expanduser().resolve()
    names = artifact.object_names("")
    dest, checksum = folder / names["image"], folder / names["checksum"]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        uploaded = not _same_image(dest, checksum, artifact)
        if uploaded:
            # Hidden and recorded: a killed upload leaves no file that looks
            # like an image, and the next factory command removes it.
            partial = folder / f".{dest.name}.part-{os.getpid()}"
            with owners.held(owners.FOLDER, partial):
                try:
                    with stream.reading(artifact.image, artifact.bytes, str(folder)) as reader, open(partial, "wb") as out:
                        for chunk in reader.chunks(_CHUNK):
                            out.write(chunk)
                        reader.check(artifact.sha256, str(folder))
                    partial.rename(dest)
                finally:
                    partial.unlink(missing_ok=True)
        _write(checksum, artifact.checksum_path.read_bytes())
        _write(folder / names["manifest"], artifact.manifest_path.read_bytes())
        for name, path in artifact.supply_chain("").items():
            _write(folder / name, path.read_bytes())
        (folder / names["latest"]).parent.mkdir(parents=True, exist_ok=True)
        _write(folder / names["latest"], artifact.latest_pointer({k: names[k] for k in ("image", "checksum", "manifest")}))
    except OSError as e:
        raise failure(str(folder), e, "check the folder exists or can be made, and is writable") from e
    return Published(target=str(folder), location=str(dest), uploaded=uploaded, latest=str(folder / names["latest"]))
