"""The `factory` command: parse, call, print. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from factory import log, progress
from factory.cli_target import target_options
from factory.cli_errors import dib_exit_codes, one_error_path
from factory.errors import UsageError, VerifyFailed
from factory.target import Flags

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

OsCloud = Annotated[Optional[str], typer.Option("--os-cloud", help="clouds.yaml entry for Glance/Swift (default: OS_CLOUD or OS_* variables).")]
S3Endpoint = Annotated[Optional[str], typer.Option("--s3-endpoint-url", help="S3 endpoint (Swift s3api, Ceph, MinIO); default: the AWS configuration's.")]
GlanceName = Annotated[Optional[str], typer.Option("--glance-name", help="Glance image name (default: the artifact's name).")]
GlanceProperty = Annotated[list[str], typer.Option("--glance-property", help="K=V image property for Glance (repeatable; wins over derived ones).")]
Visibility = Annotated[str, typer.Option("--visibility", help="Glance visibility: private (default), shared, community, public.")]
SigningKey = Annotated[Optional[Path], typer.Option("--signing-key", help="Ed25519 OpenSSH private key: sign the provenance of layers and images (ssh-keygen -Y sign).")]
TargetNames = Annotated[list[str], typer.Option("--target", help="Only the target of this name (as `factory plan` lists them; repeatable).")]
CacheFrom = Annotated[list[str], typer.Option("--cache-from", help="Pull missing layers from oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX (repeatable, tried in order).")]
CacheTo = Annotated[Optional[str], typer.Option("--cache-to", help="Push the target's layers the cache lacks to this URL.")]
CacheRequired = Annotated[bool, typer.Option("--cache-required", help="Fail when a cache cannot be used, instead of building locally.")]
Verify = Annotated[bool, typer.Option("--verify", help="Boot the image and let Trove drive it (as `factory verify --trove`; boot checks only where Trove cannot drive the agent).")]
Publish = Annotated[list[str], typer.Option("--publish", help="Publish the artifact there after the build (repeatable; as `factory publish --to`).")]
Base = Annotated[Optional[str], typer.Option("--base", help="Builder base image, or 'bootstrap'.")]


@app.callback()
@one_error_path
def main(
    ctx: typer.Context,
    log_format: Annotated[str, typer.Option("--log-format", help="console (default) or json.")] = "console",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show DIB phase output live.")] = False,
) -> None:
    if log_format not in ("console", "json"):
        raise UsageError(f"--log-format '{log_format}' is not known; use console or json")
    progress.use(progress.choose(None, dict(os.environ), sys.stderr.isatty()))
    log.setup(log_format, verbose)
    _terminate_on_sigterm()
    from factory import gc

    if ctx.invoked_subcommand != "gc":  # which reports what it releases
        gc.startup()


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


def _targets(flags: Flags, names: list[str] | None = None):
    from factory import plan as planning

    return planning.select(planning.checked_targets(flags), names or [])


@app.command()
@one_error_path
@target_options
def build(
    flags: Flags,
    refresh: Annotated[list[str], typer.Option("--refresh", help="Rebuild this layer (and those above) even if cached.")] = [],
    base: Base = None,
    compression: Annotated[str, typer.Option("--compression", help="qcow2 compression: zlib (default, any qemu), zstd (faster, qemu >= 5.1 readers), none.")] = "zlib",
    qemu_img_options: Annotated[Optional[str], typer.Option("--qemu-img-options", help="Extra -o options for qemu-img, comma separated (as DIB).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="With several targets: targets in flight at once; 2 (default) builds the next target's layers while one assembles, 1 builds them in turn.")] = 2,
    bit_identical: Annotated[bool, typer.Option("--bit-identical", help="Write the qcow2's clusters in disk order: every build of this key gives the same file (its compression then runs on one core).")] = False,
    verify: Verify = False,
    cache_from: CacheFrom = [], cache_to: CacheTo = None, cache_required: CacheRequired = False,
    require_signed: Annotated[Optional[Path], typer.Option("--require-signed", help="allowed_signers file: use a pulled layer only if one of these keys signed its provenance; else build it.")] = None,
    signing_key: SigningKey = None,
    publish: Publish = [],
    os_cloud: OsCloud = None, s3_endpoint_url: S3Endpoint = None, glance_name: GlanceName = None,
    glance_property: GlanceProperty = [], visibility: Visibility = "private",
    target_names: TargetNames = [],
    layer: Annotated[Optional[str], typer.Option("--layer", help="Only the layer whose key starts so (and what it builds on), pushed to --cache-to; nothing assembled: one node of `plan --emit`.")] = None,
    progress_form: Annotated[Optional[str], typer.Option("--progress", help="auto (default), plain, tty or json (events on stdout); default: FACTORY_PROGRESS.")] = None,
) -> None:
    """Build the image(s) for a target: missing layers bottom-up, then the artifact."""
    from factory import publish as publishing
    from factory.publish import targets as destinations
    from factory.store.remote import parse_url
    from factory.validate import all_at_once, check_build_options, check_layer_option
    from factory.signing import check_allowed_signers, check_signing_key

    # Every value is checked, every problem reported, before anything heavy
    # is even imported.
    publish_to, _, publish_options, targets, _, signing_key, require_signed, _, shown = all_at_once(
        lambda: [destinations.parse(t) for t in publish],
        lambda: check_build_options(compression, refresh),
        lambda: publishing.options(os_cloud, s3_endpoint_url, glance_name, glance_property, visibility),
        lambda: _targets(flags, target_names),
        lambda: [parse_url(url) for url in [*cache_from, *([cache_to] if cache_to else [])]],
        lambda: signing_key and check_signing_key(signing_key),
        lambda: require_signed and check_allowed_signers(require_signed),
        lambda: check_layer_option(layer, verify, publish),
        lambda: progress.choose(progress_form, dict(os.environ), sys.stderr.isatty()),
    )
    progress.use(shown)
    from factory import build as building
    from factory import manifest as manifests
    from factory.publish import artifact as artifacts
    from factory.store.cache import cache_settings

    cache = cache_settings(cache_from, cache_to, cache_required, s3_endpoint_url, flags.config,
                           signing_key=signing_key or None, allowed_signers=require_signed or None)
    if layer:
        name, key = building.build_layer(targets, layer, refresh=refresh, builder_base=base, cache=cache)
        if shown != "json":
            typer.echo(f"{name} {key}")
        return
    from factory import matrix
    from factory.engine.run import remove_own

    def after(manifest: Path) -> None:
        if shown != "json":  # there, the assembly's event names it
            typer.echo(str(manifest))
        if verify:
            from factory import conformance
            from factory import verify as verifying

            image, man = manifests.artifact_for(manifest)
            report = conformance.verify_built(image, man)
            verifying.print_report(report)
            if not report.passed:
                raise VerifyFailed(f"{image.name} did not pass its checks (report above)")
        if publish_to:
            built = artifacts.load(manifest)
            for destination in publish_to:
                _print_published(publishing.publish(built, destination, publish_options))

    matrix.build_all(
        targets,
        lambda target: building.build_target_layers(target, refresh=refresh, builder_base=base, cache=cache),
        lambda layered: building.assemble_layered(layered, refresh=refresh, compression=compression,
                                                  qemu_options=qemu_img_options, cache=cache, bit_identical=bit_identical),
        after, jobs, remove_own)


@app.command()
@one_error_path
@target_options
def plan(
    flags: Flags,
    as_: Annotated[str, typer.Option("--as", help="How to show each target's stack: table (default) or json.")] = "table",
    base: Base = None,
    target_names: TargetNames = [],
    emit: Annotated[Optional[str], typer.Option("--emit", help="Instead, the build graph of all targets for CI: json, gitlab (.gitlab-ci.yml) or github (a workflow); see docs/ci.md.")] = None,
    runner: Annotated[str, typer.Option("--runner", help="With --emit gitlab|github: jobs run the factory image (image, default) or the factory on the runner's host (shell).")] = "image",
    cache_from: CacheFrom = [], cache_to: CacheTo = None, cache_required: CacheRequired = False,
    s3_endpoint_url: S3Endpoint = None, verify: Verify = False, publish: Publish = [],
) -> None:
    """Show the layer stack for a target: keys, elements, phases, cache state; or (--emit) the build graph."""
    from factory.validate import all_at_once

    def output_form() -> None:
        if as_ not in ("table", "json"):
            raise UsageError(f"--as '{as_}' is not known; use table or json")
        if emit and as_ != "table":
            raise UsageError("--as shows each target's stack, --emit the build graph: give one of them")

    def graph_options():
        from factory import pipelines
        from factory.publish import targets as destinations
        from factory.store.cache import cache_settings

        if not emit:
            return None
        for destination in publish:
            destinations.parse(destination)
        cache = cache_settings(cache_from, cache_to, cache_required, s3_endpoint_url, flags.config)
        pipelines.check(emit, runner, cache.destination, flags.config)
        # Jobs pull from where the others push, unless told otherwise.
        return replace(cache, sources=cache.sources or tuple(filter(None, [cache.destination])))

    _, targets, cache = all_at_once(output_form, lambda: _targets(flags, target_names), graph_options)
    if emit:
        from factory import pipelines
        from factory.graph import Jobs

        pipelines.check_sources(targets)
        jobs = Jobs(config=str(flags.config or ""), cache_from=cache.sources, cache_to=cache.destination,
                    s3_endpoint_url=cache.s3_endpoint_url, verify=verify, publish=tuple(publish), base=base)
        typer.echo(pipelines.emit(emit, targets, jobs, cache, runner, ["factory", *sys.argv[1:]], base))
        return
    from factory import build as building
    from factory import plan as planning

    plans = [building.plan_with_cache(t, builder_base=base) for t in targets]
    from factory import compat

    for t in targets:
        for warning in compat.target_warnings(t):
            log.get("plan").warning(warning, target=t.name)
    if as_ == "json":
        typer.echo(json.dumps([p.to_json() for p in plans], indent=2))
    else:
        for p in plans:
            planning.print_plan(p)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
@one_error_path
@dib_exit_codes
def dib(ctx: typer.Context) -> None:
    """disk-image-create's command line, as it is (options, then elements), built as cached layers. -h: the option table; --plan: the layer cut and plan, nothing built."""
    from factory import build as building
    from factory import dib as dibs
    from factory import dib_cli
    from factory import plan as planning
    from factory.elements import dib_version, search_path

    argv = list(ctx.args)
    show_plan = "--plan" in argv
    run = dib_cli.parse([a for a in argv if a != "--plan"])
    if run.show:
        typer.echo(dib_cli.usage() if run.show == "help" else dib_version())
        return
    log.TRACE = run.trace or (log.TRACE and not run.clear_env)
    the_cut = dibs.plan_cut(run, search_path())
    for note in run.notes + the_cut.notes:
        log.get("dib").info(f"note: {note}")
    flags = dibs.flags_for(run, the_cut, dibs.implied_elements())
    (target,) = planning.checked_targets(flags, {} if run.clear_env else None)
    if dibs.mode_note(target, the_cut):
        log.get("dib").info(f"note: {dibs.mode_note(target, the_cut)}")
    if show_plan:
        dibs.print_cut(the_cut)
        planning.print_plan(building.plan_with_cache(target))
        return
    manifest = building.build(target, compression=run.compression or "zlib", qemu_options=run.qemu_img_options)
    for image in dibs.place_outputs(manifest, dib_cli.output_stem(run), run.checksum):
        typer.echo(f"Image file {image} created...")
    typer.echo("Build completed successfully")


@layers_app.command("ls")
@one_error_path
def layers_ls(
    as_: Annotated[str, typer.Option("--as", help="table or json.")] = "table",
    remote: Annotated[Optional[str], typer.Option("--remote", help="List a cache (oci://... or s3://...) instead.")] = None,
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """List layers in the local store, or in a remote cache."""
    from factory.store import local, manage as remotes

    rows = remotes.list_layers(remote, s3_endpoint_url) if remote else local.list_layers()
    if as_ == "json":
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2))
    elif remote:
        remotes.print_layers(remote, rows)
    else:
        local.print_layers(rows)


@layers_app.command("pull")
@one_error_path
def layers_pull(
    key: Annotated[str, typer.Argument(help="Layer key (or a unique prefix).")],
    from_: Annotated[str, typer.Option("--from", help="oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX.")],
    s3_endpoint_url: S3Endpoint = None,
    require_signed: Annotated[Optional[Path], typer.Option("--require-signed", help="allowed_signers file: refuse the layer unless one of these keys signed its provenance.")] = None,
) -> None:
    """Pull one layer from a cache into the local store (checked against its digests), with its SBOM and provenance."""
    from factory.signing import check_allowed_signers
    from factory.store import manage as remotes

    allowed = check_allowed_signers(require_signed) if require_signed else None
    typer.echo(remotes.pull_layer(from_, key, s3_endpoint_url, allowed))


@layers_app.command("push")
@one_error_path
def layers_push(
    key: Annotated[str, typer.Argument(help="Layer key (or a unique prefix).")],
    to: Annotated[str, typer.Option("--to", help="oci://HOST[:PORT]/REPO or s3://BUCKET/PREFIX.")],
    s3_endpoint_url: S3Endpoint = None,
    signing_key: SigningKey = None,
) -> None:
    """Push a local layer, and the layers it builds on, to a cache (those it lacks), with their SBOM and provenance."""
    from factory.signing import check_signing_key
    from factory.store import manage as remotes

    key_path = check_signing_key(signing_key) if signing_key else None
    for line in remotes.push_layer(to, key, s3_endpoint_url, key_path):
        typer.echo(line)


@layers_app.command("rm")
@one_error_path
def layers_rm(keys: Annotated[list[str], typer.Argument(help="Layer keys (or unique prefixes).")]) -> None:
    """Remove layers from the local store (and the layers built on them)."""
    from factory.store import local

    for removed in local.remove(keys):
        typer.echo(f"removed {removed}")


@layers_app.command("prune")
@one_error_path
def layers_prune(
    older_than: Annotated[Optional[str], typer.Option("--older-than", help="e.g. 30d, 12h; default: 30d.")] = None,
    remote: Annotated[Optional[str], typer.Option("--remote", help="Prune a cache (oci://... or s3://...) instead.")] = None,
    s3_endpoint_url: S3Endpoint = None,
) -> None:
    """Remove layers built long ago (never one a kept layer builds on)."""
    from factory.store import local, manage as remotes

    removed_layers = remotes.prune(remote, older_than, s3_endpoint_url) if remote else local.prune(older_than)
    for removed in removed_layers:
        typer.echo(f"removed {removed}")


@builder_app.command("build")
@one_error_path
def builder_build(
    base: Annotated[Optional[str], typer.Option("--base", help="Base image, or 'bootstrap' to make it from the Debian archive.")] = None,
    ca_bundle: Annotated[Optional[str], typer.Option("--ca-bundle", help="CA bundle lent to builds (default: the host's).")] = None,
) -> None:
    """Build (or find) the builder image."""
    from factory.engine.builder import ensure_builder
    from factory.trust import host_trust

    image = ensure_builder(host_trust(ca_bundle), base=base, verbose=log.VERBOSE)
    typer.echo(f"{image.tag} {image.id} {'built' if image.built else 'reused'}")


@app.command()
@one_error_path
def elements(as_: Annotated[str, typer.Option("--as", help="table or json.")] = "table") -> None:
    """The support matrix: distro x datastore, what building it needs, whether it is built here."""
    from dataclasses import asdict

    from factory import support
    from factory.catalog import catalog
    from factory.elements import search_path

    cat = catalog(search_path())
    built = support.built_targets()
    rows = support.matrix(cat, support.host_mirror_check, built)
    rows += support.container_matrix(cat, support.host_mirror_check, support.host_registry_check(), built)
    if as_ == "json":
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    support.print_matrix(rows, cat)


@app.command()
@one_error_path
def verify(
    artifact: Annotated[Path, typer.Argument(help="The image (or its manifest) to boot.")],
    datastore: Annotated[Optional[str], typer.Option("--datastore", help="Default: from the manifest.")] = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds the guest gets to finish booting.")] = 600,
    accel: Annotated[str, typer.Option("--accel", help="auto (KVM if it works, else TCG), kvm, tcg.")] = "auto",
    no_guest_info: Annotated[bool, typer.Option("--no-guest-info", help="Inject no guest_info.conf (the agent must not start).")] = False,
    trove: Annotated[bool, typer.Option("--trove", help="Then let Trove drive the guest over a real message queue: prepare, databases, users, volume, restart, a login from the host.")] = False,
    transport_url: Annotated[Optional[str], typer.Option("--transport-url", help="With --trove: a RabbitMQ of yours on 127.0.0.1 (default: a private one for this run).")] = None,
    config_delivery: Annotated[Optional[str], typer.Option("--config-delivery", help="With --trove: how the config files reach the guest: files (ConfigDrive, Ussuri-era) or cloud-config (user data, current Trove); default follows the agent.")] = None,
) -> None:
    """Boot an image under qemu with a ConfigDrive and check the Trove guest comes up."""
    from factory import disk_image
    from factory import manifest as manifests
    from factory import verify as verifying

    if accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"--accel '{accel}' is not known; use auto, kvm or tcg")
    if (transport_url or config_delivery) and not trove:
        raise UsageError("--transport-url and --config-delivery go with --trove")
    if trove and no_guest_info:
        raise UsageError("--no-guest-info and --trove exclude each other: Trove cannot drive a guest that has no config")
    man = None
    if datastore:
        image, guest = artifact, verifying.Guest(datastore)
        disk_image.check(image, disk_image.format_of(image) or "raw")
    else:
        image, man = manifests.artifact_for(artifact)
        guest = verifying.guest_from_manifest(man)
        fmt, entry = next(((f, e) for f, e in man.get("images", {}).items() if e.get("file") == image.name), ("qcow2", {}))
        disk_image.check(image, fmt, entry.get("sha256"))
    if trove:
        from factory import conformance

        report = conformance.verify_with_trove(image, guest, man, transport_url=transport_url,
                                               delivery=config_delivery, timeout=timeout, accel=accel)
    else:
        report = verifying.verify(image, guest, timeout=timeout, accel=accel, guest_info_file=not no_guest_info)
    verifying.print_report(report)
    if not report.passed:
        raise VerifyFailed(f"{Path(image).name} did not pass its checks (report above)")


@app.command("diff")
@one_error_path
def diff_command(
    a: Annotated[str, typer.Argument(metavar="A", help="A layer key (or prefix), an engine image, an image file or a .manifest.json.")],
    b: Annotated[str, typer.Argument(metavar="B", help="The same kind of thing as A.")],
) -> None:
    """What differs between two layers, images or manifests: diffoscope for images when installed, else file by file."""
    from factory import compare

    lines = compare.run(a, b)
    for line in lines:
        typer.echo(line)
    typer.echo(f"{len(lines)} difference(s)" if lines else "no difference")


@app.command("verify-layer")
@one_error_path
@target_options
def verify_layer(
    flags: Flags,
    key: Annotated[str, typer.Argument(help="Key (or prefix) of one of the target's layers, in the local store.")],
    base: Annotated[Optional[str], typer.Option("--base", help="Builder base image, or 'bootstrap'.")] = None,
) -> None:
    """Rebuild a cached layer under a scratch name and compare diff digests (exit 4 when they differ)."""
    from factory import build as building
    from factory import rebuild

    targets = _targets(flags)
    if len(targets) != 1:
        raise UsageError(f"verify-layer takes one target; the options give {len(targets)}")
    plan = building.plan_with_cache(targets[0], builder_base=base)
    result = rebuild.verify_layer(plan, key, log.VERBOSE)
    typer.echo(f"{result.layer} {result.key}: rebuilt in {result.seconds:.0f}s")
    typer.echo(f"  cached:  {' '.join(result.original)}")
    typer.echo(f"  rebuilt: {' '.join(result.rebuilt)}")
    if not result.match:
        raise VerifyFailed(f"layer {result.key[:16]} did not rebuild to the same bytes; see `factory diff {result.key} {result.scratch}`")
    typer.echo("match")


@app.command("gc")
@one_error_path
def gc_command() -> None:
    """Release what killed factory runs left on this host (work folders, partial
    artifacts, loop devices, qemu, brokers, build containers); never what a
    running factory holds."""
    from factory import gc

    released = gc.collect()
    for line in released:
        typer.echo(f"released {line}")
    typer.echo(f"{len(released)} left by stopped runs released")


def _print_published(result) -> None:
    state = "uploaded" if result.uploaded else "already there, nothing uploaded"
    typer.echo(f"{result.target}: {result.location} ({state})")
    if result.latest:
        typer.echo(f"  latest: {result.latest}")
    if result.trove_command:
        typer.echo(f"  register it with Trove: {result.trove_command}")


@app.command()
@one_error_path
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

    opts = publishing.options(os_cloud, s3_endpoint_url, glance_name, glance_property, visibility)
    chosen = destinations.parse_all(to)
    loaded = artifacts.load(artifact)
    for destination in chosen:
        _print_published(publishing.publish(loaded, destination, opts))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
