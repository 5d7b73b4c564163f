"""The `factory` command: parse, call, print. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from factory import log
from factory.config import Flags
from factory.errors import FactoryError

app = typer.Typer(
    help="Build OpenStack Trove guest images as a stack of cached DIB layers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
layers_app = typer.Typer(help="Inspect and manage built layers.", no_args_is_help=True)
builder_app = typer.Typer(help="The builder image (DIB and its tools).", no_args_is_help=True)
app.add_typer(layers_app, name="layers")
app.add_typer(builder_app, name="builder")

Distro = Annotated[Optional[str], typer.Option("--distro", help="debian, ubuntu, fedora (see `factory elements`)")]
Release = Annotated[Optional[str], typer.Option("--release", help="Distro release; default per distro.")]
Arch = Annotated[Optional[str], typer.Option("--arch", help="amd64 (default) or arm64.")]
Datastore = Annotated[Optional[str], typer.Option("--datastore", help="e.g. postgresql, mariadb, redis.")]
DatastoreVersion = Annotated[Optional[str], typer.Option("--datastore-version", help="Where the distro offers several.")]
AgentSource = Annotated[Optional[str], typer.Option("--agent-source", help="Guest agent: pypi[:VERSION] (default: a current trove release), path:DIR, git:URL[@REF], runtime (development only).")]
DatastoreMode = Annotated[Optional[str], typer.Option("--datastore-mode", help="native (packages in the image) or container (image preloaded for the agent to run); default follows the agent release.")]
Element = Annotated[list[str], typer.Option("--element", help="Extra DIB element (repeatable).")]
Package = Annotated[list[str], typer.Option("--package", "-p", help="Extra package to install (repeatable), like DIB's -p.")]
Env = Annotated[list[str], typer.Option("--env", help="KEY=VALUE for the elements (repeatable).")]
ImageSize = Annotated[Optional[str], typer.Option("--image-size", help="Disk size, e.g. 3G; default: from the tree, as DIB.")]
Format = Annotated[list[str], typer.Option("--format", "-t", help="qcow2 (default), raw, tar, ... (repeatable or comma-separated).")]
Output = Annotated[Optional[str], typer.Option("--output", "-o", help="Directory for artifacts (default ./out).")]
Config = Annotated[Optional[Path], typer.Option("--config", help="factory.yaml with defaults and a target matrix.")]
OsCloud = Annotated[Optional[str], typer.Option("--os-cloud", help="clouds.yaml entry for Glance/Swift (default: OS_CLOUD or OS_* variables).")]
S3Endpoint = Annotated[Optional[str], typer.Option("--s3-endpoint-url", help="S3 endpoint (Swift s3api, Ceph, MinIO); default: the AWS configuration's.")]
GlanceName = Annotated[Optional[str], typer.Option("--glance-name", help="Glance image name (default: the artifact's name).")]
GlanceProperty = Annotated[list[str], typer.Option("--glance-property", help="K=V image property for Glance (repeatable; wins over derived ones).")]
Visibility = Annotated[str, typer.Option("--visibility", help="Glance visibility: private (default), shared, community, public.")]


def _flags(**kw) -> Flags:
    return Flags(
        distro=kw["distro"], release=kw["release"], arch=kw["arch"], datastore=kw["datastore"],
        datastore_version=kw["datastore_version"], agent_source=kw["agent_source"], datastore_mode=kw["datastore_mode"],
        elements=list(kw["element"] or []), packages=list(kw["package"] or []), env=list(kw["env"] or []),
        image_size=kw["image_size"], formats=list(kw["format"] or []), output=kw["output"], config=kw["config"],
    )


def _fail(message: str, code: int = 2) -> None:
    for line in str(message).splitlines() or [""]:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(code)


def _host_error(e: OSError) -> str:
    """A failure of this host (disk full, permissions) as one line."""
    import errno

    where = f" ({e.filename})" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return f"no space left on this host's disk{where}; free space (e.g. `factory layers prune`, old artifacts) and run again"
    return f"{e.strerror or e}{where}"


@app.callback()
def main(
    log_format: Annotated[str, typer.Option("--log-format", help="console (default) or json.")] = "console",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show DIB phase output live.")] = False,
) -> None:
    if log_format not in ("console", "json"):
        _fail(f"--log-format '{log_format}' is not known; use console or json")
    log.setup(log_format, verbose)
    _terminate_on_sigterm()


def _terminate_on_sigterm() -> None:
    """SIGTERM (a CI job cancelled, `kill`) unwinds like Ctrl-C, so every
    `finally` releases what it started: containers, loop devices, qemu.
    SIGINT is set too: a shell starts background jobs with it ignored, and
    an interrupt sent on purpose must still stop the factory cleanly."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _targets(flags: Flags):
    from factory import plan as planning

    return planning.checked_targets(flags)


@app.command()
def build(
    distro: Distro = None, release: Release = None, arch: Arch = None, datastore: Datastore = None,
    datastore_version: DatastoreVersion = None, agent_source: AgentSource = None, datastore_mode: DatastoreMode = None,
    element: Element = [],
    package: Package = [], env: Env = [], image_size: ImageSize = None, format: Format = [],
    output: Output = None, config: Config = None,
    refresh: Annotated[list[str], typer.Option("--refresh", help="Rebuild this layer (and those above) even if cached.")] = [],
    base: Annotated[Optional[str], typer.Option("--base", help="Builder base image, or 'bootstrap'.")] = None,
    compression: Annotated[str, typer.Option("--compression", help="qcow2 compression: zlib (default, any qemu), zstd (faster, qemu >= 5.1 readers), none.")] = "zlib",
    qemu_img_options: Annotated[Optional[str], typer.Option("--qemu-img-options", help="Extra -o options for qemu-img, comma separated (as DIB).")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Boot the image and check it (as `factory verify`).")] = False,
    cache_from: Annotated[list[str], typer.Option("--cache-from", help="Pull missing layers from oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX (repeatable, tried in order).")] = [],
    cache_to: Annotated[Optional[str], typer.Option("--cache-to", help="Push the target's layers the cache lacks to this URL.")] = None,
    cache_required: Annotated[bool, typer.Option("--cache-required", help="Fail when a cache cannot be used, instead of building locally.")] = False,
    publish: Annotated[list[str], typer.Option("--publish", help="Publish the artifact there after the build (repeatable; as `factory publish --to`).")] = [],
    os_cloud: OsCloud = None, s3_endpoint_url: S3Endpoint = None, glance_name: GlanceName = None,
    glance_property: GlanceProperty = [], visibility: Visibility = "private",
) -> None:
    """Build the image(s) for a target: missing layers bottom-up, then the artifact."""
    from factory import build as building
    from factory import manifest as manifests
    from factory import publish as publishing
    from factory.config import cache_settings
    from factory.publish import artifact as artifacts
    from factory.publish import targets as destinations

    try:
        # Publish settings are checked before anything is built.
        publish_to = [destinations.parse(t) for t in publish]
        publish_options = publishing.options(os_cloud, s3_endpoint_url, glance_name, glance_property, visibility)
        targets = _targets(_flags(**locals()))
        cache = cache_settings(cache_from, cache_to, cache_required, s3_endpoint_url, config)
        for target in targets:
            manifest = building.build(target, refresh=refresh, builder_base=base, compression=compression,
                                      qemu_options=qemu_img_options, cache=cache)
            typer.echo(str(manifest))
            if verify:
                from factory import verify as verifying

                image, man = manifests.artifact_for(manifest)
                report = verifying.verify(image, verifying.guest_from_manifest(man))
                verifying.print_report(report)
                if not report.passed:
                    raise typer.Exit(1)
            if publish_to:
                built = artifacts.load(manifest)
                for destination in publish_to:
                    _print_published(publishing.publish(built, destination, publish_options))
    except FactoryError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; everything this build started was removed", code=130)
    except OSError as e:
        _fail(_host_error(e))


@app.command()
def plan(
    distro: Distro = None, release: Release = None, arch: Arch = None, datastore: Datastore = None,
    datastore_version: DatastoreVersion = None, agent_source: AgentSource = None, datastore_mode: DatastoreMode = None,
    element: Element = [],
    package: Package = [], env: Env = [], image_size: ImageSize = None, format: Format = [],
    output: Output = None, config: Config = None,
    as_: Annotated[str, typer.Option("--as", help="table (default) or json.")] = "table",
    base: Annotated[Optional[str], typer.Option("--base", help="Builder base image, or 'bootstrap'.")] = None,
) -> None:
    """Show the layer stack for a target: keys, elements, phases, cache state."""
    from factory import plan as planning

    if as_ not in ("table", "json"):
        _fail(f"--as '{as_}' is not known; use table or json")
    try:
        kw = dict(locals())
        targets = _targets(_flags(**kw))
        plans = [planning.plan_with_cache(t, builder_base=base) for t in targets]
    except FactoryError as e:
        _fail(str(e))
    if as_ == "json":
        typer.echo(json.dumps([p.to_json() for p in plans], indent=2))
    else:
        for p in plans:
            planning.print_plan(p)


@layers_app.command("ls")
def layers_ls(
    as_: Annotated[str, typer.Option("--as", help="table or json.")] = "table",
    remote: Annotated[Optional[str], typer.Option("--remote", help="List a cache (oci://... or s3://...) instead.")] = None,
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """List layers in the local store, or in a remote cache."""
    from factory.store import local, manage as remotes

    try:
        rows = remotes.list_layers(remote, s3_endpoint_url) if remote else local.list_layers()
    except FactoryError as e:
        _fail(str(e))
    if as_ == "json":
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2))
    elif remote:
        remotes.print_layers(remote, rows)
    else:
        local.print_layers(rows)


@layers_app.command("pull")
def layers_pull(
    key: Annotated[str, typer.Argument(help="Layer key (or a unique prefix).")],
    from_: Annotated[str, typer.Option("--from", help="oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX.")],
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """Pull one layer from a cache into the local store (checked against its digests)."""
    from factory.store import manage as remotes

    try:
        typer.echo(remotes.pull_layer(from_, key, s3_endpoint_url))
    except FactoryError as e:
        _fail(str(e))


@layers_app.command("push")
def layers_push(
    key: Annotated[str, typer.Argument(help="Layer key (or a unique prefix).")],
    to: Annotated[str, typer.Option("--to", help="oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX.")],
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """Push a local layer, and the layers it builds on, to a cache (those it lacks)."""
    from factory.store import manage as remotes

    try:
        for line in remotes.push_layer(to, key, s3_endpoint_url):
            typer.echo(line)
    except FactoryError as e:
        _fail(str(e))


@layers_app.command("rm")
def layers_rm(keys: Annotated[list[str], typer.Argument(help="Layer keys (or unique prefixes).")]) -> None:
    """Remove layers from the local store (and the layers built on them)."""
    from factory.store import local

    try:
        for removed in local.remove(keys):
            typer.echo(f"removed {removed}")
    except FactoryError as e:
        _fail(str(e))


@layers_app.command("prune")
def layers_prune(
    older_than: Annotated[Optional[str], typer.Option("--older-than", help="e.g. 30d, 12h; default: 30d.")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="Prune a cache (oci://... or s3://...) instead.")] = None,
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """Remove layers built long ago (never one a kept layer builds on)."""
    from factory.store import local, manage as remotes

    try:
        removed_layers = remotes.prune(remote, older_than, s3_endpoint_url) if remote else local.prune(older_than)
        for removed in removed_layers:
            typer.echo(f"removed {removed}")
    except FactoryError as e:
        _fail(str(e))


@builder_app.command("build")
def builder_build(
    base: Annotated[Optional[str], typer.Option("--base", help="Base image, or 'bootstrap' to make it from the Debian archive.")] = None,
    ca_bundle: Annotated[Optional[str], typer.Option("--ca-bundle", help="CA bundle lent to builds (default: the host's).")] = None,
) -> None:
    """Build (or find) the builder image."""
    from factory.engine.builder import ensure_builder
    from factory.trust import host_trust

    try:
        image = ensure_builder(host_trust(ca_bundle), base=base, verbose=log.VERBOSE)
    except FactoryError as e:
        _fail(str(e))
    typer.echo(f"{image.tag} {image.id} {'built' if image.built else 'reused'}")


@app.command()
def elements(as_: Annotated[str, typer.Option("--as", help="table or json.")] = "table") -> None:
    """The support matrix: distro x datastore, what building it needs, whether it is built here."""
    from dataclasses import asdict

    from factory import support
    from factory.config import catalog
    from factory.elements import search_path

    try:
        cat = catalog(search_path())
        rows = support.matrix(cat, support.host_mirror_check, support.built_targets())
    except FactoryError as e:
        _fail(str(e))
    if as_ == "json":
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="support matrix (native datastores; container mode runs any of them from an image)",
                  title_justify="left")
    for col in ("distro", "default release", "datastore", "status", "built here"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.distro, cat.default_releases.get(r.distro, "?"), r.datastore, r.status, "yes" if r.built_here else "-")
    Console(width=max(Console().width, 140)).print(table)


@app.command()
def verify(
    artifact: Annotated[Path, typer.Argument(help="The image (or its manifest) to boot.")],
    datastore: Annotated[Optional[str], typer.Option("--datastore", help="Default: from the manifest.")] = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds the guest gets to finish booting.")] = 600,
    accel: Annotated[str, typer.Option("--accel", help="auto (KVM if it works, else TCG), kvm, tcg.")] = "auto",
    no_guest_info: Annotated[bool, typer.Option("--no-guest-info", help="Inject no guest_info.conf (the agent must not start).")] = False,
) -> None:
    """Boot an image under qemu with a ConfigDrive and check the Trove guest comes up."""
    from factory import manifest as manifests
    from factory import verify as verifying

    if accel not in ("auto", "kvm", "tcg"):
        _fail(f"--accel '{accel}' is not known; use auto, kvm or tcg")
    try:
        if datastore:
            image, guest = artifact, verifying.Guest(datastore)
        else:
            image, man = manifests.artifact_for(artifact)
            guest = verifying.guest_from_manifest(man)
        report = verifying.verify(image, guest, timeout=timeout, accel=accel, guest_info_file=not no_guest_info)
    except FactoryError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; the guest was stopped and its scratch files removed", code=130)
    verifying.print_report(report)
    if not report.passed:
        raise typer.Exit(1)


def _print_published(result) -> None:
    state = "uploaded" if result.uploaded else "already there, nothing uploaded"
    typer.echo(f"{result.target}: {result.location} ({state})")
    if result.latest:
        typer.echo(f"  latest: {result.latest}")
    if result.trove_command:
        typer.echo(f"  register it with Trove: {result.trove_command}")


@app.command()
def publish(
    artifact: Annotated[Path, typer.Argument(help="The image to publish (.qcow2), or its .manifest.json.")],
    to: Annotated[list[str], typer.Option("--to", help="glance, s3://BUCKET/PREFIX, swift://CONTAINER/PREFIX, file:///DIR or a directory (repeatable; default: ./published).")] = [],
    os_cloud: OsCloud = None, s3_endpoint_url: S3Endpoint = None, glance_name: GlanceName = None,
    glance_property: GlanceProperty = [], visibility: Visibility = "private",
) -> None:
    """Publish an artifact to Glance, S3, Swift or a directory; the same sha256 is never uploaded twice."""
    from factory import publish as publishing
    from factory.publish import artifact as artifacts
    from factory.publish import targets as destinations

    try:
        opts = publishing.options(os_cloud, s3_endpoint_url, glance_name, glance_property, visibility)
        chosen = destinations.parse_all(to)
        loaded = artifacts.load(artifact)
        for destination in chosen:
            _print_published(publishing.publish(loaded, destination, opts))
    except FactoryError as e:
        _fail(str(e))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
