"""`factory layers ls/pull/push/prune` against a remote cache."""

from __future__ import annotations

import time
from pathlib import Path

from factory import attest
from factory.errors import FactoryError
from factory.store import local
from factory.store.prune import parse_age, prunable
from factory.signing import Untrusted
from factory.store.cache import open_store
from factory.store.remote import RemoteLayer


def list_layers(url: str, s3_endpoint_url: str | None) -> list[RemoteLayer]:
    return sorted(open_store(url, s3_endpoint_url).list(), key=lambda r: r.created)


def print_layers(url: str, rows: list[RemoteLayer]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} layer(s) in {url}", title_justify="left")
    for col in ("key", "layer", "target", "age", "parent", "digest"):
        table.add_column(col)
    now = time.time()
    for r in rows:
        table.add_row(r.key[:16], r.layer, r.target, local.age(now - r.created), r.parent[:16] or "-", r.digest[:19])
    Console().print(table)


def pull_layer(url: str, prefix: str, s3_endpoint_url: str | None, allowed_signers: Path | None = None) -> str:
    """With allowed signers, a layer none of them signed is refused before its bytes are fetched."""
    store = open_store(url, s3_endpoint_url)
    key = prefix if len(prefix) == 64 else local.match_key(prefix, [r.key for r in store.list()], f"`factory layers ls --remote {url}`")
    files = store.pull_attachments(key)
    statement = signer = None
    if allowed_signers:
        try:
            statement, signer = attest.trusted(key, files, allowed_signers)
        except Untrusted as e:
            raise Untrusted(f"layer {key[:16]} in {url} refused: {e} (--require-signed)") from e
    got = store.pull(key)
    if got is None:
        raise FactoryError(f"{url} has no layer {key[:16]}; see `factory layers ls --remote {url}`")
    if statement is not None:
        attest.check_pulled(key, statement)
    attest.save(key, files)
    if signer:
        return f"pulled {key} ({got.bytes} bytes in {got.seconds:.1f}s), signed by {signer}"
    return f"pulled {key} ({got.bytes} bytes in {got.seconds:.1f}s)"


def push_layer(url: str, prefix: str, s3_endpoint_url: str | None, signing_key: Path | None = None) -> list[str]:
    """The layer and those it builds on, bottom first, each only if the cache
    lacks it; with a signing key, the statements of all of them are signed
    and sent again."""
    rows = {r.key: r for r in local.list_layers()}
    key = local.match_key(prefix, list(rows), "`factory layers ls`")
    chain = [key]
    while rows[chain[-1]].parent in rows:
        chain.append(rows[chain[-1]].parent)
    store = open_store(url, s3_endpoint_url)
    lines = []
    for k in reversed(chain):
        there = store.has(k)
        if not there or signing_key:
            store.push_attachments(k, attest.ensure(k, signing_key))
        if there:
            lines.append(f"present {rows[k].layer} {k}" + (" (signed)" if signing_key else ""))
            continue
        sent = store.push(k)
        lines.append(f"pushed {rows[k].layer} {k} ({sent.bytes} bytes in {sent.seconds:.1f}s)" + (" (signed)" if signing_key else ""))
    return lines


def prune(url: str, older_than: str | None, s3_endpoint_url: str | None) -> list[str]:
    """Layers built before the age go, unless a kept layer builds on them."""
    limit = parse_age(older_than or "30d")
    store = open_store(url, s3_endpoint_url)
    rows = store.list()
    doomed = prunable({r.key: (r.parent, r.created) for r in rows}, limit, time.time())
    chosen = [r for r in rows if r.key in doomed]
    store.delete(chosen)
    return [f"{r.layer} {r.key}" for r in chosen]
