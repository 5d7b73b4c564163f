"""Layers in an OCI registry, tagged by key, pushed and pulled by the engine.

The engine does the integrity work: a pull names the manifest digest the
registry recorded at push, and the engine checks that manifest and every blob
against their digests before it keeps anything. Listing and deleting speak the
registry's HTTP API, which the engine does not expose.

A layer's attachments (SBOM, provenance, signature: factory/attest.py) travel
as a one-layer image of those files tagged `<key>.att`, which the engine
pushes and pulls with the same credentials as the layer.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import socket
import tarfile
import time
from dataclasses import dataclass, field

import docker
import requests

from factory import log
from factory.engine.docker import client
from factory.errors import FactoryError
from factory.stored import LABEL, LAYER_REPO
from factory.locks import host_lock
from factory.store.local import layer_image
from factory.store.progress import TransferProgress
from factory.store.remote import Refused, RemoteLayer, RemoteURL, RetryPolicy, Transfer, first_line, parse_created

_log = log.get("oci")
_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
# The engine's words for content that does not match its digest.
_INTEGRITY = ("verification failed", "digest mismatch", "invalid diffid", "unexpected eof")


def _transient(e: BaseException) -> bool:
    if isinstance(e, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(e, docker.errors.NotFound):
        return False
    if isinstance(e, docker.errors.APIError):
        return e.status_code is None or e.status_code >= 500
    if isinstance(e, requests.HTTPError):
        return e.response is not None and e.response.status_code >= 500
    return isinstance(e, _StreamError) and not e.integrity


class _StreamError(FactoryError):
    def __init__(self, message: str):
        super().__init__(message)
        self.integrity = any(w in message.lower() for w in _INTEGRITY)


@dataclass
class _Tally:
    """An engine push/pull stream, summed per blob."""

    progress: TransferProgress
    current: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    digest: str = ""

    def feed(self, event: dict) -> None:
        if "error" in event:
            raise _StreamError(event["error"])
        blob = event.get("id", "")
        detail = event.get("progressDetail") or {}
        if blob and event.get("status"):
            self.status[blob] = event["status"]
        if blob and detail.get("total"):
            self.current[blob], self.total[blob] = detail.get("current", 0), detail["total"]
            self.progress.update(sum(self.current.values()), sum(self.total.values()))
        self.digest = (event.get("aux") or {}).get("Digest", self.digest)


def _insecure(host: str) -> bool:
    """Plain HTTP where the engine itself would use it (its insecure registries)."""
    config = client().info().get("RegistryConfig") or {}
    index = (config.get("IndexConfigs") or {}).get(host)
    if index is not None:
        return not index.get("Secure", True)
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host.rsplit(":", 1)[0]))
    except (OSError, ValueError):
        return False
    return any(address in ipaddress.ip_network(c) for c in config.get("InsecureRegistryCIDRs") or [])


class _Registry:
    """The few registry HTTP calls the engine has no endpoint for (anonymous access)."""

    def __init__(self, url: RemoteURL):
        self.base = f"{'http' if _insecure(url.host) else 'https'}://{url.host}/v2/{url.path}"
        self.session = requests.Session()

    def _get(self, path: str, **headers) -> requests.Response:
        r = self.session.get(f"{self.base}/{path}", headers=headers, timeout=60)
        if r.status_code == 401:
            raise FactoryError(f"{self.base} asks for credentials; listing and pruning support anonymous registries only")
        return r

    def tags(self) -> list[str]:
        r = self._get("tags/list")
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return r.json().get("tags") or []

    def manifest(self, reference: str) -> tuple[str, dict]:
        r = self._get(f"manifests/{reference}", Accept=_MANIFEST)
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"], r.json()

    def config(self, manifest: dict) -> dict:
        r = self._get(f"blobs/{manifest['config']['digest']}")
        r.raise_for_status()
        return json.loads(r.content)

    def delete(self, digest: str) -> None:
        r = self.session.delete(f"{self.base}/manifests/{digest}", timeout=60)
        if r.status_code == 405:
            raise FactoryError(f"{self.base} does not allow deletes; enable storage.delete in the registry's config")
        r.raise_for_status()


class OciStore:
    def __init__(self, url: RemoteURL, retry: RetryPolicy = RetryPolicy()):
        self.url = url
        self.repo = f"{url.host}/{url.path}"
        self.retry = retry

    def _registry(self) -> _Registry:
        return _Registry(self.url)

    def _digest(self, key: str) -> str | None:
        """The manifest digest the registry recorded when this key was pushed."""
        def lookup() -> str | None:
            try:
                return client().images.get_registry_data(f"{self.repo}:{key}").id
            except docker.errors.NotFound:
                return None

        return self.retry.call(lookup, _transient, f"{self.url}: looking up {key[:16]}")

    def _lock(self, key: str):
        """The engine pushes and pulls through references that this host's
        other builds share: one at a time makes one, uses it, takes it away."""
        name = hashlib.sha256(f"{self.repo}:{key}".encode()).hexdigest()
        return host_lock(name, "another build is moving this layer; waiting for it", key=key[:16])

    def has(self, key: str) -> bool:
        return self._digest(key) is not None

    def pull(self, key: str) -> Transfer | None:
        digest = self._digest(key)
        if digest is None:
            return None
        started = time.monotonic()
        pinned = f"{self.repo}@{digest}"
        with self._lock(key), TransferProgress(f"pull {key[:12]}") as progress:
            tally = _Tally(progress)

            def fetch() -> None:
                for event in client().api.pull(self.repo, tag=digest, stream=True, decode=True):
                    tally.feed(event)

            try:
                self.retry.call(fetch, _transient, f"{self.url}: pulling {key[:16]}")
            except _StreamError as e:
                raise Refused(f"{self.url}: {key[:16]} does not match its digest {digest[:19]}: {first_line(e)}") from e
            image = client().images.get(pinned)
            labels = image.labels or {}
            if labels.get(f"{LABEL}.key") != key:
                client().images.remove(pinned)
                raise Refused(f"{self.url}: the image under {key[:16]} carries key {labels.get(f'{LABEL}.key', 'none')[:16]}")
            image.tag(LAYER_REPO, key)
            client().images.remove(pinned)  # a reference only: the layer keeps its own tag
        downloaded = sum(t for blob, t in tally.total.items() if tally.status.get(blob) != "Already exists")
        return Transfer(downloaded, time.monotonic() - started)

    def push(self, key: str) -> Transfer:
        image = layer_image(key)
        started = time.monotonic()
        with self._lock(key):
            image.tag(self.repo, key)
            try:
                with TransferProgress(f"push {key[:12]}") as progress:
                    tally = _Tally(progress)

                    def send() -> None:
                        for event in client().api.push(self.repo, tag=key, stream=True, decode=True):
                            tally.feed(event)

                    self.retry.call(send, _transient, f"{self.url}: pushing {key[:16]}")
            finally:
                client().images.remove(f"{self.repo}:{key}")
        pushed = {blob for blob, status in tally.status.items() if status == "Pushed"}
        _, manifest = self._registry().manifest(tally.digest)
        diff_ids = image.attrs["RootFS"]["Layers"]
        sent = sum(blob["size"] for diff, blob in zip(diff_ids, manifest["layers"]) if diff[7:19] in pushed)
        _log.debug("pushed", key=key[:16], digest=tally.digest)
        return Transfer(sent, time.monotonic() - started)

    def push_attachments(self, key: str, files: dict[str, bytes]) -> None:
        tag = attachments_tag(key)
        with self._lock(tag):
            client().api.import_image_from_data(files_tar(files), repository=self.repo, tag=tag,
                                                changes=[f"LABEL {LABEL}.attachments={key}"])
            try:
                def send() -> None:
                    for event in client().api.push(self.repo, tag=tag, stream=True, decode=True):
                        if "error" in event:
                            raise _StreamError(event["error"])

                self.retry.call(send, _transient, f"{self.url}: pushing the attachments of {key[:16]}")
            finally:
                client().images.remove(f"{self.repo}:{tag}")

    def pull_attachments(self, key: str) -> dict[str, bytes]:
        tag = attachments_tag(key)
        digest = self._digest(tag)
        if digest is None:
            return {}
        pinned = f"{self.repo}@{digest}"
        with self._lock(tag):
            def fetch() -> None:
                for event in client().api.pull(self.repo, tag=digest, stream=True, decode=True):
                    if "error" in event:
                        raise _StreamError(event["error"])

            self.retry.call(fetch, _transient, f"{self.url}: pulling the attachments of {key[:16]}")
            try:
                return files_in_saved(b"".join(client().api.get_image(pinned)))
            finally:
                client().images.remove(pinned)

    def list(self) -> list[RemoteLayer]:
        registry = self._registry()

        def read() -> list[RemoteLayer]:
            rows = []
            for tag in registry.tags():
                if tag.endswith(_ATTACHMENTS):
                    continue
                digest, manifest = registry.manifest(tag)
                config = registry.config(manifest)
                labels = (config.get("config") or {}).get("Labels") or {}
                if labels.get(f"{LABEL}.key") != tag:
                    continue
                rows.append(RemoteLayer(key=tag, layer=labels.get(f"{LABEL}.layer", "?"), parent=labels.get(f"{LABEL}.parent", ""),
                                        target=labels.get(f"{LABEL}.target", ""), created=parse_created(config.get("created", "")),
                                        digest=digest))
            return rows

        return self.retry.call(read, _transient, f"{self.url}: listing")

    def delete(self, layers: list[RemoteLayer]) -> None:
        registry = self._registry()
        tags = set(registry.tags())
        for layer in layers:
            self.retry.call(lambda: registry.delete(layer.digest), _transient, f"{self.url}: deleting {layer.key[:16]}")
            if attachments_tag(layer.key) in tags:
                digest, _ = registry.manifest(attachments_tag(layer.key))
                self.retry.call(lambda: registry.delete(digest), _transient, f"{self.url}: deleting the attachments of {layer.key[:16]}")


_ATTACHMENTS = ".att"


def attachments_tag(key: str) -> str:
    return key + _ATTACHMENTS


def files_tar(files: dict[str, bytes]) -> bytes:
    """A tarball of the files, the same bytes for the same files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def files_in_saved(archive: bytes) -> dict[str, bytes]:
    """The regular files in the layers of a `docker save` archive (of an attachments image)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        for member in outer:
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for entry in layer:
                        if entry.isfile():
                            files[entry.name.removeprefix("./")] = layer.extractfile(entry).read()
            except tarfile.ReadError:
                continue  # a config or manifest, not a layer
    return files

