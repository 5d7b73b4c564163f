"""What travels with a layer besides its bytes: its SBOM and its provenance
statement, signed when the builder holds a key.

Kept on this host in the state folder, one folder per layer key (made at
build time, or when first asked for a layer that came without them); pushed
to and pulled from remote caches with the layer. A consumer that requires
signatures checks, before it uses a pulled layer, that an allowed signer
signed its statement, that the statement names this key and the exact image
the pull gave, and that the SBOM is the one the statement names.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import docker

from factory import __version__, log, provenance, reproducible, sbom, signing
from factory.engine.docker import client, run_output
from factory.settings import state_dir
from factory.signing import Untrusted
from factory.stored import LABEL, layer_tag

SBOM = "sbom.cdx.json"
PROVENANCE = "provenance.json"
SIGNATURE = "provenance.json.sig"
NAMES = (SBOM, PROVENANCE, SIGNATURE)
_log = log.get("attest")


def folder(key: str) -> Path:
    return state_dir() / "attachments" / key


def stored(key: str) -> dict[str, bytes]:
    """The documents this host holds for a layer (name -> bytes)."""
    return {name: (folder(key) / name).read_bytes() for name in NAMES if (folder(key) / name).is_file()}


def save(key: str, files: dict[str, bytes]) -> None:
    """Each file whole or not at all."""
    where = folder(key)
    where.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name not in NAMES:
            continue
        partial = where / f".{name}.part"
        partial.write_bytes(data)
        partial.rename(where / name)


def forget(key: str) -> None:
    shutil.rmtree(folder(key), ignore_errors=True)


def inventory(image: str) -> sbom.Inventory:
    """The packages installed in an image's tree. A tree with no shell (a
    layer that only adds files, say) has no package database to read: its
    inventory is empty rather than an error that stops a push."""
    return sbom.parse(_inventory_text(image))


def _inventory_text(image: str) -> str:
    try:
        out = run_output(image, ["sh", "-c", sbom.INVENTORY])
    except docker.errors.APIError as e:
        if "executable file not found" not in str(getattr(e, "explanation", "") or e):
            raise
        _log.warning("no shell in the tree: its SBOM lists no packages", image=image)
        return ""
    return out.decode(errors="replace")


def layer_inventory(key: str) -> sbom.Inventory:
    """inventory() of a layer's tree, kept beside its documents for the image
    it was read from: read once (a container, about a second), not again for
    the SBOM of each layer built on it and of each image assembled from it."""
    image = _image(key)
    if image is None:
        return inventory(layer_tag(key))
    kept = folder(key) / f"inventory-{image.id.split(':')[-1]}.txt"
    if kept.is_file():
        return sbom.parse(kept.read_text())
    text = _inventory_text(layer_tag(key))
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_name(f".{kept.name}.{os.getpid()}.part")
    partial.write_text(text)
    partial.rename(kept)
    return sbom.parse(text)


def layer_inputs(image) -> dict:
    return json.loads((image.labels or {}).get(f"{LABEL}.inputs") or "{}")


def _image(key: str):
    try:
        return client().images.get(layer_tag(key))
    except docker.errors.ImageNotFound:
        return None


def ensure(key: str, signing_key: Path | None = None) -> dict[str, bytes]:
    """The layer's SBOM and statement, made from the local image if this host
    has none yet; signed anew when a key is given."""
    files = stored(key)
    image = _image(key)
    if image is None:
        return files
    if SBOM not in files or PROVENANCE not in files:
        labels, inputs = image.labels or {}, layer_inputs(image)
        parent_key = labels.get(f"{LABEL}.parent") or None
        parent = _image(parent_key) if parent_key else None
        tree = layer_inventory(key)
        layer_sbom = sbom.document(sbom.added(tree, layer_inventory(parent_key) if parent else None),
                                   f"{labels.get(f'{LABEL}.layer', 'layer')} layer", key,
                                   reproducible.source_date_epoch(inputs.get("env") or {}), __version__).encode()
        statement = provenance.layer_statement(key, image.id, image.attrs["RootFS"]["Layers"], inputs,
                                               labels.get(f"{LABEL}.target", ""), layer_sbom, __version__,
                                               parent.id if parent else None)
        files = {SBOM: layer_sbom, PROVENANCE: provenance.encode(statement)}
        save(key, files)
    if signing_key is not None:
        files[SIGNATURE] = signing.sign(files[PROVENANCE], signing_key)
        save(key, {SIGNATURE: files[SIGNATURE]})
    return files


def trusted(key: str, files: dict[str, bytes], allowed_signers: Path) -> tuple[dict, str]:
    """(statement, signer) of a pulled layer's documents, or Untrusted."""
    if PROVENANCE not in files:
        raise Untrusted("it has no provenance statement")
    signer = signing.verify(files[PROVENANCE], files.get(SIGNATURE), allowed_signers)
    statement = json.loads(files[PROVENANCE])
    if provenance.subject_digest(statement, f"factory-layer:{key}") is None:
        raise Untrusted(f"its signed statement is not about layer {key[:16]}")
    byproducts = {b.get("name"): (b.get("digest") or {}).get("sha256") for b in statement["predicate"]["runDetails"].get("byproducts", [])}
    if SBOM in files and byproducts.get(SBOM) != provenance.digest_of(files[SBOM]):
        raise Untrusted("its SBOM is not the one its signed statement names")
    return statement, signer


def check_pulled(key: str, statement: dict) -> None:
    """Untrusted unless the image just pulled under the key is the one the
    statement names; one that is not leaves the local store."""
    image = _image(key)
    want = provenance.subject_digest(statement, f"factory-layer:{key}")
    if image is None or image.id != want:
        if image is not None:
            client().images.remove(layer_tag(key))
        raise Untrusted(f"the pulled image is {image.id[:19] if image else 'missing'}, its signed statement names {str(want)[:19]}")
