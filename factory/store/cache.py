"""A build's remote caches: which ones (flags, FACTORY_CACHE_* variables,
factory.yaml's `cache:`), the store each URL opens, pulling a missing layer
from the first that has it, pushing what the destination lacks. A cache that fails is a warning and the build
goes on locally, unless the settings make the cache required."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import botocore.exceptions
import docker
import requests
import yaml

from factory import attest, log
from factory.config import read_config_file
from factory.errors import FactoryError, Unavailable
from factory.signing import Untrusted
from factory.store.remote import Refused, RemoteStore, RemoteURL, Transfer, Unreachable, first_line, parse_url

_log = log.get("cache")
# What a store that cannot be used raises, besides Unreachable (refusals, or a
# server that says no, e.g. to credentials).
_FAILURES = (FactoryError, docker.errors.DockerException, requests.RequestException,
             botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


@dataclass(frozen=True)
class CacheSettings:
    """Where layers are pulled from (in order) and pushed to."""

    sources: tuple[str, ...] = ()
    destination: str | None = None
    required: bool = False
    s3_endpoint_url: str | None = None
    signing_key: Path | None = None  # signs what is pushed
    allowed_signers: Path | None = None  # pulled layers must be signed by one of these


_CACHE_KEYS = {"from": "sources", "to": "destination", "required": "required", "s3_endpoint_url": "s3_endpoint_url"}


def _cache_file_values(path: Path | None) -> dict:
    if path is None:
        return {}
    read_config_file(path)  # the whole file is checked, as for a build
    raw = (yaml.safe_load(path.read_text()) or {}).get("cache") or {}
    if not isinstance(raw, dict):
        raise FactoryError(f"{path}: 'cache' is a mapping with from, to, required, s3_endpoint_url")
    unknown = {str(k).replace("-", "_") for k in raw} - set(_CACHE_KEYS)
    if unknown:
        raise FactoryError(f"{path}: cache: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(_CACHE_KEYS)}")
    return {_CACHE_KEYS[str(k).replace("-", "_")]: v for k, v in raw.items()}


def _listed(value) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value or "").replace(",", " ").split()
    return tuple(str(i) for i in items if str(i).strip())


def cache_settings(sources: list[str], destination: str | None, required: bool, s3_endpoint_url: str | None,
                   config: Path | None = None, environ: dict[str, str] | None = None,
                   signing_key: Path | None = None, allowed_signers: Path | None = None) -> CacheSettings:
    """Flags win over FACTORY_CACHE_* variables, which win over factory.yaml's `cache:`."""
    env = os.environ if environ is None else environ
    file = _cache_file_values(config)
    settings = CacheSettings(
        sources=_listed(sources) or _listed(env.get("FACTORY_CACHE_FROM")) or _listed(file.get("sources")),
        destination=destination or env.get("FACTORY_CACHE_TO") or file.get("destination") or None,
        required=required or env.get("FACTORY_CACHE_REQUIRED", "").lower() in ("1", "true", "yes") or bool(file.get("required")),
        s3_endpoint_url=s3_endpoint_url or env.get("FACTORY_S3_ENDPOINT_URL") or file.get("s3_endpoint_url") or None,
        signing_key=signing_key, allowed_signers=allowed_signers,
    )
    for url in (*settings.sources, *([settings.destination] if settings.destination else [])):
        parse_url(url)
    return settings


def open_store(url: RemoteURL | str, s3_endpoint_url: str | None = None) -> RemoteStore:
    url = parse_url(url) if isinstance(url, str) else url
    if url.kind == "oci":
        from factory.store.oci import OciStore

        return OciStore(url)
    from factory.store.s3 import S3Store

    return S3Store(url, endpoint_url=s3_endpoint_url)


@dataclass
class RemoteCache:
    settings: CacheSettings
    stores: dict[str, RemoteStore] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    refused: set[tuple[str, str]] = field(default_factory=set)  # (url, key): a push replaces them

    def _store(self, url: str) -> RemoteStore:
        if url not in self.stores:
            self.stores[url] = open_store(url, self.settings.s3_endpoint_url)
        return self.stores[url]

    def _failed(self, url: str, e: BaseException) -> None:
        reason = first_line(e)
        if self.settings.required:
            raise Unavailable(f"cache {url} failed ({reason}); it is required (--cache-required): check it or drop the flag")
        _log.warning("cache unreachable; going on without it", cache=url, reason=reason)
        self.down.add(url)

    def pull(self, layer: str, key: str) -> Transfer | None:
        for url in self.settings.sources:
            if url in self.down:
                continue
            try:
                store = self._store(url)
                files = store.pull_attachments(key)
                statement = signer = None
                if self.settings.allowed_signers:  # before a byte of the layer is fetched
                    statement, signer = attest.trusted(key, files, self.settings.allowed_signers)
                got = store.pull(key)
                if got is not None and statement is not None:
                    attest.check_pulled(key, statement)
                    _log.info("layer signature verified", layer=layer, key=key[:16], signer=signer, cache=url)
            except Untrusted as e:
                _log.warning(f"layer refused: {e} (--require-signed); building it instead", layer=layer, key=key[:16], cache=url)
                continue
            except Refused as e:
                _log.warning("layer refused: it does not match its recorded digest; building it instead",
                             layer=layer, key=key[:16], cache=url, reason=first_line(e))
                self.refused.add((url, key))
                continue
            except (Unreachable, *_FAILURES) as e:
                self._failed(url, e)
                continue
            if got is not None:
                attest.save(key, files)
                _log.info("layer pulled", layer=layer, key=key[:16], seconds=round(got.seconds, 1), bytes=got.bytes, cache=url)
                return got
        return None

    def held(self, keys: set[str]) -> set[str]:
        """The keys some --cache-from cache holds (nothing pulled)."""
        found: set[str] = set()
        for url in self.settings.sources:
            for key in sorted(keys - found):
                if url in self.down:
                    break
                try:
                    if self._store(url).has(key):
                        found.add(key)
                except (Unreachable, *_FAILURES) as e:
                    self._failed(url, e)
        return found

    def push(self, layers: list[tuple[str, str]]) -> dict[str, Transfer]:
        """Each (layer, key) the destination lacks, bottom first; key -> what was sent."""
        url = self.settings.destination
        sent: dict[str, Transfer] = {}
        if not url or url in self.down:
            return sent
        store = self._store(url)
        for layer, key in layers:
            try:
                there = (url, key) not in self.refused and store.has(key)
                if not there or self.settings.signing_key:
                    store.push_attachments(key, attest.ensure(key, self.settings.signing_key))
                if there:
                    _log.info("layer already in the cache", layer=layer, key=key[:16], cache=url)
                    continue
                sent[key] = store.push(key)
            except (Unreachable, *_FAILURES) as e:
                self._failed(url, e)
                break
            _log.info("layer pushed", layer=layer, key=key[:16], seconds=round(sent[key].seconds, 1), bytes=sent[key].bytes, cache=url)
        return sent
