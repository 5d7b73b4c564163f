"""Remote layer stores: what a cache URL names, what every store can do, and
how transient network faults are retried.

A remote layer is found by its key only; its bytes are checked against the
digests recorded when it was pushed before the local store takes it.
"""

from __future__ import annotations

import time
from datetime import datetime
from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

from factory import log
from factory.errors import FactoryError

_log = log.get("remote")
T = TypeVar("T")


class Unreachable(FactoryError):
    """The store did not answer (after retries): the build goes on without it."""


class Refused(FactoryError):
    """A remote layer failed its integrity check: it is never used."""


@dataclass(frozen=True)
class RemoteURL:
    kind: str  # oci or s3
    host: str  # registry host[:port], or the bucket
    path: str  # repository, or key prefix (no leading or trailing slash)

    def __str__(self) -> str:
        return f"{self.kind}://{self.host}/{self.path}".rstrip("/")


def parse_url(text: str) -> RemoteURL:
    scheme, sep, rest = text.strip().partition("://")
    if not sep or scheme not in ("oci", "s3"):
        raise FactoryError(f"cache '{text}' is not a cache URL; use oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX, "
                           "e.g. oci://127.0.0.1:5000/factory/layers or s3://my-bucket/factory/layers")
    host, _, path = rest.partition("/")
    path = path.strip("/")
    if "@" in host:
        safe = f"{scheme}://{host.rpartition('@')[2]}/{path}"
        raise FactoryError(f"cache '{safe}' carries credentials; use `docker login` or the AWS configuration instead")
    if not host:
        example = "oci://127.0.0.1:5000/factory/layers" if scheme == "oci" else "s3://my-bucket/factory/layers"
        raise FactoryError(f"cache '{text}' names no {'registry' if scheme == 'oci' else 'bucket'}; "
                           f"a valid one looks like {example}")
    if scheme == "oci" and (not path or path != path.lower() or "//" in path):
        raise FactoryError(f"cache '{text}': give a lowercase repository, e.g. oci://{host}/factory/layers")
    return RemoteURL(scheme, host, path)


@dataclass(frozen=True)
class RemoteLayer:
    key: str
    layer: str
    parent: str
    target: str
    created: float  # epoch seconds the layer was built
    digest: str  # the manifest (OCI) or config (S3) digest recorded at push

    def to_json(self) -> dict:
        return {"key": self.key, "layer": self.layer, "parent": self.parent or None, "target": self.target,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.created)), "digest": self.digest}


@dataclass(frozen=True)
class Transfer:
    bytes: int  # bytes that crossed the network (0: all were there already)
    seconds: float


class RemoteStore(Protocol):
    url: RemoteURL

    def has(self, key: str) -> bool: ...

    def pull(self, key: str) -> Transfer: ...

    def push(self, key: str) -> Transfer: ...

    def list(self) -> list[RemoteLayer]: ...

    def delete(self, layers: list[RemoteLayer]) -> None: ...

    def push_attachments(self, key: str, files: dict[str, bytes]) -> None: ...

    def pull_attachments(self, key: str) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    first: float = 1.0
    factor: float = 2.0
    cap: float = 8.0

    def delays(self) -> list[float]:
        """Pauses between attempts: exponential, capped."""
        return [min(self.cap, self.first * self.factor**i) for i in range(self.attempts - 1)]

    def call(self, fn: Callable[[], T], transient: Callable[[BaseException], bool], what: str,
             sleep: Callable[[float], None] = time.sleep) -> T:
        """fn(), again after each pause while it fails transiently; then Unreachable."""
        pauses = self.delays()
        for attempt in range(self.attempts):
            try:
                return fn()
            except Exception as e:
                if not transient(e):
                    raise
                if attempt == len(pauses):
                    raise Unreachable(f"{what}: {first_line(e)}") from e
                # Debug only: a cache that stays down is reported once, by
                # its caller, as a warning or (when required) the error.
                _log.debug("retrying", what=what, seconds=pauses[attempt], reason=first_line(e))
                sleep(pauses[attempt])
        raise Unreachable(f"{what}: no attempt made")


def parse_created(stamp: str) -> float:
    """An image config's RFC 3339 time (nanoseconds and all) as epoch seconds."""
    try:
        return datetime.fromisoformat(stamp[:19] + "+00:00").timestamp()
    except ValueError:
        return 0.0


def first_line(e: BaseException) -> str:
    """What went wrong, in one line: the engine's own words where it gave them
    (not the URL of the engine call that carried them)."""
    text = str(getattr(e, "explanation", None) or e)
    return (text.strip().splitlines() or [type(e).__name__])[0][:300]
