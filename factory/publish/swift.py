"""Publish to Swift natively, through openstacksdk's object store. Large
images become a static large object (SLO): segments in CONTAINER_segments,
as Swift's own client does, each PUT with its ETag (Swift refuses a segment
whose md5 differs), and a manifest that Swift checks against them."""

from __future__ import annotations

import contextlib
import hashlib
import json
from urllib.parse import quote

from factory.errors import PublishFailed
from factory.publish import Options, Published, cloud, failure, stream, targets
from factory.publish.artifact import Artifact


def _headers(artifact: Artifact, content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type, **{f"X-Object-Meta-{k}": v for k, v in artifact.metadata().items()}}


def _path(container: str, name: str = "") -> str:
    return quote(f"{container}/{name}" if name else container)


def _ok(response):
    """openstacksdk's object store hands back error responses; raise them."""
    from openstack import exceptions

    exceptions.raise_from_response(response)
    return response


def _put(store, container: str, name: str, data: bytes, headers: dict[str, str]) -> str:
    md5 = hashlib.md5(data).hexdigest()
    _ok(store.put(_path(container, name), data=data, headers={**headers, "ETag": md5}))
    return md5


def _already_there(store, container: str, name: str, artifact: Artifact) -> bool:
    r = store.head(_path(container, name))
    if r.status_code == 404:
        return False
    _ok(r)
    return (int(r.headers.get("Content-Length", -1)) == artifact.bytes
            and r.headers.get("X-Object-Meta-Factory-Sha256") == artifact.sha256)


def _upload_image(store, container: str, name: str, artifact: Artifact, part_size: int) -> None:
    where = f"swift://{container}/{name}"
    headers = _headers(artifact, "application/octet-stream")
    with stream.reading(artifact.image, artifact.bytes, where) as reader:
        if artifact.bytes <= part_size:
            data = reader.read()
            reader.check(artifact.sha256, where)
            _put(store, container, name, data, headers)
            return
        segments_container = f"{container}_segments"
        _ok(store.put(_path(segments_container)))
        # Named by content: a retry after a failure writes the same names.
        base = f"{name}/{artifact.sha256[:16]}/{part_size}"
        segments: list[dict] = []
        try:
            for number, chunk in enumerate(reader.chunks(part_size), start=1):
                segment = f"{base}/{number:08d}"
                md5 = _put(store, segments_container, segment, chunk, {"Content-Type": "application/octet-stream"})
                segments.append({"path": f"/{segments_container}/{segment}", "etag": md5, "size_bytes": len(chunk)})
            reader.check(artifact.sha256, where)
            _ok(store.put(_path(container, name) + "?multipart-manifest=put", data=json.dumps(segments),
                          headers=headers))
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the first error is the one to report
                for seg in segments:
                    store.delete(quote(seg["path"].lstrip("/")))
            raise
    # An SLO's ETag is the md5 of its segments' md5s, as Swift computed them.
    want = hashlib.md5("".join(s["etag"] for s in segments).encode()).hexdigest()
    got = _ok(store.head(_path(container, name))).headers.get("Etag", "").strip('"')
    if got != want:
        store.delete(_path(container, name) + "?multipart-manifest=delete")  # the object and its segments
        raise PublishFailed(f"Swift's checksum of {where} ({got}) is not the one sent ({want}); nothing was kept; "
                           "publish again")


def publish(artifact: Artifact, target: targets.Swift, opts: Options) -> Published:
    conn = cloud.connect(opts.os_cloud)
    names = artifact.object_names(target.prefix)
    container = target.place
    try:
        store = conn.object_store
        _ok(store.put(_path(container)))  # creating a container is idempotent in Swift
        uploaded = not _already_there(store, container, names["image"], artifact)
        if uploaded:
            _upload_image(store, container, names["image"], artifact, opts.part_size)
        _put(store, container, names["checksum"], artifact.checksum_path.read_bytes(), _headers(artifact, "text/plain"))
        _put(store, container, names["manifest"], artifact.manifest_path.read_bytes(),
             _headers(artifact, "application/json"))
        for name, path in artifact.supply_chain(target.prefix).items():
            _put(store, container, name, path.read_bytes(), _headers(artifact, "application/json"))
        pointer = artifact.latest_pointer({k: f"swift://{container}/{names[k]}" for k in ("image", "checksum", "manifest")})
        _put(store, container, names["latest"], pointer, _headers(artifact, "application/json"))
    except cloud.errors() as e:
        raise failure(str(target), e, "check the cloud configuration (--os-cloud, OS_*) and that it may write "
                                      f"to container '{container}'") from e
    return Published(target=str(target), location=f"swift://{container}/{names['image']}", uploaded=uploaded,
                     latest=f"swift://{container}/{names['latest']}")
