"""Publish to Glance with openstacksdk: the image Trove boots, with the
properties Nova and operators look for, and the command that registers it
as a Trove datastore version.

Idempotent by sha256: an active image carrying this artifact's sha256 is
reported, not uploaded again. An image this factory left half-made (a
publish that died, a Glance that went away) is recognised by its
`factory_sha256` property and removed by the next publish."""

from __future__ import annotations

import shlex

from factory import log
from factory.errors import FactoryError, PublishFailed
from factory.publish import Options, Published, cloud, failure, stream, targets
from factory.publish.artifact import Artifact

# Nova's os_version is the distributor's version number, not its code name.
OS_VERSIONS = {"bullseye": "11", "bookworm": "12", "trixie": "13",
               "focal": "20.04", "jammy": "22.04", "noble": "24.04"}
ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64"}
# Statuses of an image whose upload never finished.
UNFINISHED = ("queued", "saving", "uploading", "importing", "killed")

_log = log.get("factory.publish")


def properties(artifact: Artifact, extra: dict[str, str]) -> dict[str, str]:
    """Image properties from the manifest; `extra` (--glance-property) wins."""
    t = artifact.target
    props = {
        "os_distro": t["distro"],
        "os_version": OS_VERSIONS.get(t["release"], t["release"]),
        "architecture": ARCHITECTURES.get(t.get("arch") or "amd64", t.get("arch") or "amd64"),
        "trove_datastore": t["datastore"],
        "factory_key": artifact.key,
        "factory_sha256": artifact.sha256,
    }
    version = artifact.datastore_version()
    if version:
        props["trove_datastore_version"] = version
    if artifact.datastore_mode():
        props["trove_datastore_mode"] = artifact.datastore_mode()
    for image in artifact.manifest.get("datastore_images") or []:
        # Which image the guest preloads, where it came from, its content.
        props["trove_datastore_image"] = image["image"]
        props["trove_datastore_image_source"] = image["source"]
        if image.get("id"):
            props["trove_datastore_image_id"] = image["id"]
        if image.get("digest"):
            props["trove_datastore_image_digest"] = image["digest"]
    if "qemu-guest-agent" in artifact.packages():
        props["hw_qemu_guest_agent"] = "yes"
    return {**props, **extra}


def tags(artifact: Artifact) -> list[str]:
    return ["trove", *(d for d in artifact.target["datastore"].split(",") if d)]


def trove_command(artifact: Artifact, image_id: str) -> str:
    """`openstack datastore version create VERSION_NAME DATASTORE MANAGER IMAGE_ID`;
    Trove's manager for each datastore is named after it."""
    datastore = artifact.target["datastore"]
    version = artifact.datastore_version() or "latest"
    words = ["openstack", "datastore", "version", "create", "--active", "--version-number", version,
             version, datastore, datastore, image_id]
    return " ".join(shlex.quote(w) for w in words)


def _flat(image) -> dict:
    """An image's attributes and free-form properties as Glance shows them."""
    d = image.to_dict()
    return {**{k: v for k, v in d.items() if k != "properties"}, **(d.get("properties") or {})}


def _find(api, artifact: Artifact):
    """(the active image with this sha256 or None, the unfinished images we made)."""
    done, unfinished = None, []
    for image in api.images(tag="trove"):
        props = _flat(image)
        if "factory_sha256" not in props:
            continue
        if image.status == "active" and props["factory_sha256"] == artifact.sha256 and done is None:
            done = image
        elif image.status in UNFINISHED:
            unfinished.append(image)
    return done, unfinished


def _disk_format(artifact: Artifact) -> str:
    if artifact.format in ("qcow2", "raw", "vmdk", "vdi", "vhdx"):
        return artifact.format
    raise FactoryError(f"Glance cannot take a '{artifact.format}' image; build qcow2 or raw for it")


def _upload(api, artifact: Artifact, name: str, props: dict[str, str], visibility: str) -> str:
    with stream.reading(artifact.image, artifact.bytes, "glance") as reader:
        # openstacksdk deletes the image itself when the upload fails and
        # Glance still answers; when Glance is gone, _find cleans up later.
        image = api.create_image(name, data=reader, size=artifact.bytes, disk_format=_disk_format(artifact),
                                 container_format="bare", tags=tags(artifact), visibility=visibility,
                                 sha256=artifact.sha256, allow_duplicates=True, meta=props)
    try:
        reader.check(artifact.sha256, "glance")
        got = api.get_image(image.id)
        if got.status != "active":
            raise PublishFailed(f"Glance left image {image.id} '{got.status}' after the upload; publish again")
        # What Glance hashed is what was read: md5 always, os_hash_value with its algorithm.
        if got.checksum and got.checksum != reader.md5.hexdigest():
            raise PublishFailed(f"Glance's md5 of image {image.id} is not the one sent; publish again")
        if got.hash_algo == "sha512" and got.hash_value != reader.sha512.hexdigest():
            raise PublishFailed(f"Glance's sha512 of image {image.id} is not the one sent; publish again")
    except FactoryError:
        api.delete_image(image.id, ignore_missing=True)
        raise
    return image.id


def publish(artifact: Artifact, target: targets.Glance, opts: Options) -> Published:
    conn = cloud.connect(opts.os_cloud)
    api = conn.image
    props = properties(artifact, dict(opts.glance_properties))
    from openstack.exceptions import HttpException

    try:
        done, unfinished = _find(api, artifact)
        for image in unfinished:
            _log.info("removing an unfinished image an earlier publish left", image_id=image.id, status=image.status)
            try:
                api.delete_image(image.id, ignore_missing=True)
            except HttpException as e:  # another project's: not ours to remove, and no reason to stop
                _log.warning("could not remove an unfinished image", image_id=image.id, reason=log.scrub(str(e)))
        if done is not None:
            try:
                api.update_image_properties(image=done, meta=props)  # e.g. a new --glance-property
            except HttpException as e:  # e.g. a public image of another project: report it all the same
                _log.warning("could not update the image's properties", image_id=done.id, reason=log.scrub(str(e)))
            image_id, uploaded = done.id, False
        else:
            image_id = _upload(api, artifact, opts.glance_name or artifact.stem, props, opts.visibility)
            uploaded = True
    except cloud.errors() as e:
        raise failure("glance", e, "if an image was left half-made, the next publish removes it") from e
    return Published(target="glance", location=image_id, uploaded=uploaded,
                     trove_command=trove_command(artifact, image_id))
