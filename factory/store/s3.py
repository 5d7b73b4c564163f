"""Layers in S3 (AWS, or Swift's S3 API, Ceph, MinIO), through boto3.

Layout under the prefix, content-addressed so that bytes are stored once:
  blobs/sha256/<hex>   a layer's diff tarball (as `docker save` writes it), or
                       an image config, gzip-compressed; named by the sha256
                       of its uncompressed bytes (the digest the image names)
  layers/<key>.json    the record of one layer: its config digest and the
                       digests of every diff it stands on, in order
  attachments/<key>/<name>  the layer's SBOM, provenance statement and its
                       signature (factory/attest.py), written before the record
A record is written last, after every blob it names is complete (multipart
uploads appear whole or not at all), so a key is visible only when it can be
pulled; two machines pushing one key each write complete blobs and a complete
record, and whichever record is written last stays.
A pull checks every byte it downloads, uncompressed, against the record
before the engine sees it; the engine rebuilds the image from those blobs
with `docker load`.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import docker
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from factory import log
from factory.engine.docker import client
from factory.errors import FactoryError
from factory.stored import LABEL, layer_tag
from factory.s3client import s3_client
from factory.store.local import layer_image
from factory.settings import state_dir
from factory.store.progress import TransferProgress
from factory.store.remote import Refused, RemoteLayer, RemoteURL, RetryPolicy, Transfer, parse_created

_log = log.get("s3")
_CHUNK = 1 << 20
_GZIP = 31  # zlib's wbits for the gzip format
_TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
# A blob no record names is kept this long: a push in flight writes its
# blobs first and its record last.
ORPHAN_GRACE = 86400.0


@dataclass(frozen=True)
class Layout:
    prefix: str

    def _join(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def blob(self, digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        return self._join("blobs", algorithm, hexdigest)

    def record(self, key: str) -> str:
        return self._join("layers", f"{key}.json")

    def attachment(self, key: str, name: str) -> str:
        return self._join("attachments", key, name)

    @property
    def records(self) -> str:
        return self._join("layers") + "/"

    @property
    def blobs(self) -> str:
        return self._join("blobs") + "/"


def make_record(key: str, config_digest: str, config: dict) -> dict:
    labels = (config.get("config") or {}).get("Labels") or {}
    return {
        "key": key,
        "layer": labels.get(f"{LABEL}.layer", "?"),
        "parent": labels.get(f"{LABEL}.parent", ""),
        "target": labels.get(f"{LABEL}.target", ""),
        "created": config.get("created", ""),
        "config": config_digest,
        "layers": list((config.get("rootfs") or {}).get("diff_ids") or []),
        "compression": "gzip",
    }


def check_config(key: str, record: dict, config_bytes: bytes) -> dict:
    """The config a record names, or Refused: its bytes, key label and diffs must all agree."""
    actual = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    if record.get("key") != key or actual != record.get("config"):
        raise Refused(f"config of {key[:16]} is {actual[:19]}, its record says {str(record.get('config'))[:19]}: corrupt or tampered")
    config = json.loads(config_bytes)
    if make_record(key, actual, config) != record or ((config.get("config") or {}).get("Labels") or {}).get(f"{LABEL}.key") != key:
        raise Refused(f"config of {key[:16]} does not carry that key and the record's layers")
    return config


def _tar_entry(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def load_archive(key: str, config_digest: str, config_bytes: bytes, diff_ids: list[str], files: dict[str, Path]) -> Iterator[bytes]:
    """A `docker load` archive, streamed: the engine reuses the layers it has,
    so only those in `files` (diff digest -> verified tarball) are included."""
    config_name = f"{config_digest.partition(':')[2]}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [layer_tag(key)],
                            "Layers": [f"{d.partition(':')[2]}/layer.tar" for d in diff_ids]}]).encode()
    for name, data in (("manifest.json", manifest), (config_name, config_bytes)):
        yield _tar_entry(name, len(data)) + data + _padding(len(data))
    for digest, path in files.items():
        size = path.stat().st_size
        yield _tar_entry(f"{digest.partition(':')[2]}/layer.tar", size)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk
        yield _padding(size)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


class ExportStream(io.RawIOBase):
    """The engine's `docker save` byte chunks as a readable file, without copies."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.rest = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.rest:
            self.rest = memoryview(next(self.chunks, b""))
        n = min(len(buffer), len(self.rest))
        buffer[:n] = self.rest[:n]
        self.rest = self.rest[n:]
        return n


def spool(source: BinaryIO, folder: Path, compress: bool = False) -> tuple[str, Path]:
    """Copy to a temporary file, hashing what goes in: (sha256 digest, file).
    Compressed at gzip's level 1: most of its gain on a filesystem diff, at a
    fraction of its time."""
    h, gz = hashlib.sha256(), zlib.compressobj(1, wbits=_GZIP)
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as out:
        while chunk := source.read(_CHUNK):
            h.update(chunk)
            out.write(gz.compress(chunk) if compress else chunk)
        if compress:
            out.write(gz.flush())
    return "sha256:" + h.hexdigest(), Path(out.name)


def unpack(source: BinaryIO, folder: Path) -> tuple[str, Path]:
    """Decompress to a temporary file, hashing what comes out: (sha256 digest, file)."""
    h, gz = hashlib.sha256(), zlib.decompressobj(wbits=_GZIP)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as out:
            while chunk := source.read(_CHUNK):
                data = gz.decompress(chunk)
                h.update(data)
                out.write(data)
    except zlib.error as e:
        raise Refused(f"a blob is not valid gzip ({e}): corrupt or tampered") from e
    if not gz.eof or gz.unused_data:
        raise Refused("a blob's gzip stream is cut short or has bytes after its end: corrupt or tampered")
    return "sha256:" + h.hexdigest(), Path(out.name)


def _scratch() -> tempfile.TemporaryDirectory:
    """Room for blobs in transit, beside the factory's other state (not /tmp,
    which may be small): a base layer's diff is about a gigabyte."""
    work = state_dir() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=work)


def _transient(e: BaseException) -> bool:
    if isinstance(e, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        return True
    if isinstance(e, botocore.exceptions.ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or e.response.get("Error", {}).get("Code") in ("SlowDown", "RequestTimeout")
    return False


def _missing(e: botocore.exceptions.ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3Store:
    def __init__(self, url: RemoteURL, endpoint_url: str | None = None, retry: RetryPolicy = RetryPolicy()):
        self.url = url
        self.bucket = url.host
        self.layout = Layout(url.path)
        self.retry = retry
        # boto3 retries a request once; RetryPolicy backs off over longer faults.
        self.s3 = s3_client(endpoint_url, attempts=2)
        # Blobs that failed their check on pull: a push replaces them.
        self.refused: set[str] = set()

    def _call(self, what: str, fn):
        return self.retry.call(fn, _transient, f"{self.url}: {what}")

    def _get(self, name: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                return self.s3.get_object(Bucket=self.bucket, Key=name)["Body"].read()
            except botocore.exceptions.ClientError as e:
                if _missing(e):
                    return None
                raise

        return self._call(f"reading {name}", get)

    def _exists(self, name: str) -> bool:
        def head() -> bool:
            try:
                self.s3.head_object(Bucket=self.bucket, Key=name)
                return True
            except botocore.exceptions.ClientError as e:
                if _missing(e):
                    return False
                raise

        return self._call(f"looking up {name}", head)

    def _record(self, key: str) -> dict | None:
        raw = self._get(self.layout.record(key))
        return json.loads(raw) if raw is not None else None

    def has(self, key: str) -> bool:
        return self._exists(self.layout.record(key))

    def _download(self, digest: str, folder: Path, progress: TransferProgress) -> Path:
        """A blob, uncompressed into the folder, or Refused unless its bytes are the digest's."""
        def fetch() -> tuple[str, Path]:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.layout.blob(digest))["Body"]
            return unpack(_Counted(body, progress), folder)

        try:
            actual, path = self._call(f"downloading {digest[:19]}", fetch)
        except Refused as e:
            self.refused.add(digest)
            raise Refused(f"blob {digest[:19]}: {e}") from e
        if actual != digest:
            self.refused.add(digest)
            raise Refused(f"blob {digest[:19]} downloaded as {actual[:19]}: corrupt or tampered")
        return path

    def pull(self, key: str) -> Transfer | None:
        record = self._record(key)
        if record is None:
            return None
        started = time.monotonic()
        diff_ids = record["layers"]
        have = _local_diffs(record["parent"])
        start = len(have) if diff_ids[:len(have)] == have else 0
        with _scratch() as tmp, TransferProgress(f"pull {key[:12]}") as progress:
            config_bytes = self._download(record["config"], Path(tmp), progress).read_bytes()
            check_config(key, record, config_bytes)
            files = {d: self._download(d, Path(tmp), progress) for d in dict.fromkeys(diff_ids[start:])}
            for event in client().api.load_image(load_archive(key, record["config"], config_bytes, diff_ids, files)):
                if "error" in event:
                    raise Refused(f"the engine refused {key[:16]}: {event['error']}")
        return Transfer(progress.done, time.monotonic() - started)

    def push(self, key: str) -> Transfer:
        image = layer_image(key)
        started = time.monotonic()
        wanted = [image.id, *image.attrs["RootFS"]["Layers"]]
        needed = {d for d in wanted if d in self.refused or not self._exists(self.layout.blob(d))}
        sent = 0
        if not needed:  # a record lost or never written: its blobs are all there
            with _scratch() as tmp:
                config_bytes = self._download(image.id, Path(tmp), TransferProgress("")).read_bytes()
        else:
            config_bytes, sent = self._upload(key, image.id, needed)
        if needed or config_bytes is None:
            raise FactoryError(f"the engine's export of {key[:16]} lacked {len(needed)} of its blobs; try again")
        record = make_record(key, image.id, json.loads(config_bytes))
        self._call("writing the record", lambda: self.s3.put_object(
            Bucket=self.bucket, Key=self.layout.record(key), Body=json.dumps(record, indent=1).encode(),
            ContentType="application/json"))
        return Transfer(sent, time.monotonic() - started)

    def _upload(self, key: str, config_digest: str, needed: set[str]) -> tuple[bytes | None, int]:
        """The needed blobs from the engine's export of the layer, uploaded
        (each found is taken out of `needed`): (config bytes, bytes sent)."""
        config_bytes = None
        sent = 0
        with _scratch() as tmp, TransferProgress(f"push {key[:12]}") as progress:
            saved = tarfile.open(fileobj=io.BufferedReader(ExportStream(client().api.get_image(layer_tag(key), chunk_size=_CHUNK)), _CHUNK), mode="r|")
            for member in saved:
                is_config = member.name == f"{config_digest.partition(':')[2]}.json"
                if not member.isfile() or not (is_config or member.name.endswith("/layer.tar")):
                    continue
                # Which diff a member holds shows only once it is read: copy
                # each, and compress the ones the cache lacks.
                digest, raw = spool(saved.extractfile(member), Path(tmp))
                if is_config:
                    config_bytes = raw.read_bytes()
                if digest not in needed:
                    raw.unlink()
                    continue
                with open(raw, "rb") as f:
                    _, path = spool(f, Path(tmp), compress=True)
                raw.unlink()
                self._call(f"uploading {digest[:19]}", lambda: self.s3.upload_file(
                    str(path), self.bucket, self.layout.blob(digest), Config=_TRANSFER, Callback=progress.advance))
                sent += path.stat().st_size
                needed.discard(digest)
                self.refused.discard(digest)
                path.unlink()
        return config_bytes, sent

    def push_attachments(self, key: str, files: dict[str, bytes]) -> None:
        for name, data in sorted(files.items()):
            self._call(f"writing {name} of {key[:16]}", lambda: self.s3.put_object(
                Bucket=self.bucket, Key=self.layout.attachment(key, name), Body=data))

    def pull_attachments(self, key: str) -> dict[str, bytes]:
        from factory.attest import NAMES

        found = {name: self._get(self.layout.attachment(key, name)) for name in NAMES}
        return {name: data for name, data in found.items() if data is not None}

    def list(self) -> list[RemoteLayer]:
        rows = []
        for name in self._names(self.layout.records):
            raw = self._get(name)
            if raw is None:
                continue
            r = json.loads(raw)
            rows.append(RemoteLayer(key=r["key"], layer=r["layer"], parent=r["parent"], target=r["target"],
                                    created=parse_created(r["created"]), digest=r["config"]))
        return rows

    def _names(self, prefix: str, older_than: float | None = None) -> list[str]:
        def scan() -> list[str]:
            names = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if older_than is None or obj["LastModified"].timestamp() < older_than:
                        names.append(obj["Key"])
            return names

        return self._call(f"listing {prefix}", scan)

    def delete(self, layers: list[RemoteLayer]) -> None:
        """Records first (the layers vanish at once), then blobs no record names."""
        for layer in layers:
            self._call(f"deleting {layer.key[:16]}", lambda: self.s3.delete_object(Bucket=self.bucket, Key=self.layout.record(layer.key)))
            for name in self._names(self.layout.attachment(layer.key, "") + "/"):
                self._call(f"deleting {name}", lambda: self.s3.delete_object(Bucket=self.bucket, Key=name))
        named: set[str] = set()
        for name in self._names(self.layout.records):
            record = json.loads(self._get(name) or b"{}")
            named.update(self.layout.blob(d) for d in [record.get("config", ""), *record.get("layers", [])] if d)
        for name in self._names(self.layout.blobs, older_than=time.time() - ORPHAN_GRACE):
            if name not in named:
                self._call(f"deleting {name}", lambda: self.s3.delete_object(Bucket=self.bucket, Key=name))


class _Counted:
    """A download body that reports its bytes to the progress bar."""

    def __init__(self, body, progress: TransferProgress):
        self.body, self.progress = body, progress

    def read(self, n: int = -1) -> bytes:
        chunk = self.body.read(n)
        self.progress.advance(len(chunk))
        return chunk


def _local_diffs(parent: str) -> list[str]:
    """The diffs the engine already holds under the parent layer, bottom first."""
    if not parent:
        return []
    try:
        return list(client().images.get(layer_tag(parent)).attrs["RootFS"]["Layers"])
    except docker.errors.ImageNotFound:
        return []
