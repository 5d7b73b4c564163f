"""Where an artifact can go, parsed from `--to` / `--publish` (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path
from urllib.parse import urlsplit

from factory.errors import FactoryError

# With nothing configured, `factory publish` copies to this folder.
DEFAULT_DIR = Path("published")
FORMS = "glance, s3://BUCKET/PREFIX, swift://CONTAINER/PREFIX, file:///DIR or a directory"


@dataclass(frozen=True)
class Glance:
    def __str__(self) -> str:
        return "glance"


@dataclass(frozen=True)
class _ObjectStore:
    place: str  # the bucket or container
    prefix: str = ""
    scheme: ClassVar[str]

    def __str__(self) -> str:
        return f"{self.scheme}://{self.place}/{self.prefix}".rstrip("/")


class S3(_ObjectStore):
    scheme = "s3"


class Swift(_ObjectStore):
    scheme = "swift"


@dataclass(frozen=True)
class Directory:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


Target = Glance | S3 | Swift | Directory


def parse(text: str) -> Target:
    text = text.strip()
    if not text:
        raise FactoryError(f"an empty publish target; use {FORMS}")
    if text == "glance":
        return Glance()
    if "://" not in text:
        return Directory(Path(text))
    url = urlsplit(text)
    if url.query or url.fragment:
        raise FactoryError(f"publish target '{text}' has a query or fragment; use {FORMS}")
    if url.scheme == "file":
        if url.netloc not in ("", "localhost") or not url.path:
            raise FactoryError(f"'{text}' is no local folder; write file:///ABSOLUTE/DIR")
        return Directory(Path(url.path))
    if url.scheme in ("s3", "swift"):
        where = url.netloc
        if not where or "@" in where:
            what = "bucket" if url.scheme == "s3" else "container"
            raise FactoryError(f"'{text}' names no {what}; write {url.scheme}://{what.upper()}/PREFIX "
                               "(credentials go in the standard configuration, never in the target)")
        prefix = url.path.strip("/")
        return S3(where, prefix) if url.scheme == "s3" else Swift(where, prefix)
    raise FactoryError(f"publish target scheme '{url.scheme}' is not known; use {FORMS}")


def parse_all(texts: list[str]) -> list[Target]:
    """Each target once, in the order given; the local folder when none is."""
    out: list[Target] = []
    for text in texts or [str(DEFAULT_DIR)]:
        target = parse(text)
        if target not in out:
            out.append(target)
    return out
