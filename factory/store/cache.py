"""A build's remote caches: pull a missing layer from the first that has it,
push what the destination lacks. A cache that fails is a warning and the build
goes on locally, unless the settings make the cache required."""

from __future__ import annotations

from dataclasses import dataclass, field

import botocore.exceptions
import docker
import requests

from factory import log
from factory.config import CacheSettings
from factory.errors import FactoryError
from factory.store.remote import Refused, RemoteStore, Transfer, Unreachable, first_line, open_store

_log = log.get("cache")
# What a store that cannot be used raises, besides Unreachable (refusals, or a
# server that says no, e.g. to credentials).
_FAILURES = (FactoryError, docker.errors.DockerException, requests.RequestException,
             botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


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
            raise FactoryError(f"cache {url} failed ({reason}); it is required (--cache-required): check it or drop the flag")
        _log.warning("cache unreachable; going on without it", cache=url, reason=reason)
        self.down.add(url)

    def pull(self, layer: str, key: str) -> Transfer | None:
        for url in self.settings.sources:
            if url in self.down:
                continue
            try:
                got = self._store(url).pull(key)
            except Refused as e:
                _log.warning("layer refused: it does not match its recorded digest; building it instead",
                             layer=layer, key=key[:16], cache=url, reason=first_line(e))
                self.refused.add((url, key))
                continue
            except (Unreachable, *_FAILURES) as e:
                self._failed(url, e)
                continue
            if got is not None:
                _log.info("layer pulled", layer=layer, key=key[:16], seconds=round(got.seconds, 1), bytes=got.bytes, cache=url)
                return got
        return None

    def push(self, layers: list[tuple[str, str]]) -> dict[str, Transfer]:
        """Each (layer, key) the destination lacks, bottom first; key -> what was sent."""
        url = self.settings.destination
        sent: dict[str, Transfer] = {}
        if not url or url in self.down:
            return sent
        store = self._store(url)
        for layer, key in layers:
            try:
                if (url, key) not in self.refused and store.has(key):
                    _log.info("layer already in the cache", layer=layer, key=key[:16], cache=url)
                    continue
                sent[key] = store.push(key)
            except (Unreachable, *_FAILURES) as e:
                self._failed(url, e)
                break
            _log.info("layer pushed", layer=layer, key=key[:16], seconds=round(sent[key].seconds, 1), bytes=sent[key].bytes, cache=url)
        return sent
