"""Publish an artifact where Trove takes it from: Glance, S3, Swift or a
local folder. One module per destination; each is idempotent by sha256."""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory import log
from factory.errors import FactoryError, PublishFailed, Unavailable
from factory.publish import targets
from factory.publish.artifact import Artifact

VISIBILITIES = ("private", "shared", "community", "public")


@dataclass(frozen=True)
class Options:
    os_cloud: str | None = None  # a clouds.yaml entry; else OS_CLOUD / OS_* variables
    s3_endpoint_url: str | None = None  # Swift s3api, Ceph, MinIO; else the AWS configuration's
    glance_name: str | None = None  # default: the artifact's name
    glance_properties: tuple[tuple[str, str], ...] = ()
    visibility: str = "private"
    part_size: int = 64 << 20  # multipart part / Swift segment size


@dataclass(frozen=True)
class Published:
    target: str
    location: str  # the image's URL, path or Glance id
    uploaded: bool  # False: the same sha256 was already there
    latest: str | None = None
    trove_command: str | None = None


def options(os_cloud: str | None = None, s3_endpoint_url: str | None = None, glance_name: str | None = None,
            glance_property: list[str] | None = None, visibility: str = "private") -> Options:
    """Options from the command line, checked."""
    if visibility not in VISIBILITIES:
        raise FactoryError(f"--visibility '{visibility}' is not known; use {', '.join(VISIBILITIES)}")
    props = []
    for item in glance_property or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FactoryError(f"--glance-property '{item}' is not KEY=VALUE")
        props.append((key.strip(), value))
    return Options(os_cloud=os_cloud, s3_endpoint_url=s3_endpoint_url, glance_name=glance_name,
                   glance_properties=tuple(props), visibility=visibility)


def publish(artifact: Artifact, target: targets.Target, opts: Options) -> Published:
    _log = log.get("factory.publish")
    _log.info("publishing", image=artifact.image.name, to=str(target), sha256=artifact.sha256[:12])
    if isinstance(target, targets.Glance):
        from factory.publish import glance as destination
    elif isinstance(target, targets.S3):
        from factory.publish import s3 as destination
    elif isinstance(target, targets.Swift):
        from factory.publish import swift as destination
    else:
        from factory.publish import local as destination
    result = destination.publish(artifact, target, opts)
    _log.info("published" if result.uploaded else "already published", to=result.target,
              location=result.location, latest=result.latest)
    return result


def _lost_connection(error: BaseException) -> bool:
    """Whether the server went away or never answered, somewhere in the
    chain of exceptions (each client library wraps the one below)."""
    names = {"ConnectFailure", "ConnectionError", "EndpointConnectionError", "ConnectTimeout", "ConnectionRefusedError"}
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if type(seen).__name__ in names:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def failure(where: str, error: Exception, after: str = "") -> FactoryError:
    """One line saying what failed where, with no credential in it: the
    destination refused (exit 5), or it did not answer (exit 6, worth a retry)."""
    reason = " ".join(str(error).split()) or type(error).__name__
    kind = PublishFailed
    if _lost_connection(error):
        url = re.search(r"https?://[^\s\"']+", reason)
        reason = "the server stopped answering or refused the connection" + (f" ({url.group(0).rstrip(':')})" if url else "")
        kind = Unavailable
    elif len(reason) > 300:
        reason = reason[:300] + "..."
    return kind(log.scrub(f"publishing to {where} failed: {reason}{'; ' + after if after else ''}"))
