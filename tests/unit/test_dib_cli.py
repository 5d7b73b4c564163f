"""`factory dib` reads disk-image-create's command line as disk-image-create
does, and cuts its element list into layers by the rules in layers/_dib.yaml."""

from __future__ import annotations

import pytest

from factory.dib_cli import OPTIONS, REFUSED, output_stem, parse, usage
from factory.dib_cut import cut
from factory.errors import BuildFailed, UsageError

SEED = ["-a", "amd64", "-o", "trove-mysql", "-x", "--qemu-img-options", "compat=1.1",
        "ubuntu", "vm", "cloud-init-datasources", "ubuntu-guest", "ubuntu-mysql"]


def test_the_seed_command_line():
    run = parse(SEED)
    assert run.elements == ["ubuntu", "vm", "cloud-init-datasources", "ubuntu-guest", "ubuntu-mysql"]
    assert (run.arch, run.name, run.trace, run.qemu_img_options) == ("amd64", "trove-mysql", True, "compat=1.1")
    assert run.formats == ("qcow2",) and not run.notes


def test_options_and_elements_may_mix_as_with_getopt():
    run = parse(["ubuntu", "-t", "qcow2,tar", "vm", "-p", "vim,curl", "-p", "jq", "-u", "ubuntu-guest"])
    assert run.elements == ["ubuntu", "vm", "ubuntu-guest"]
    assert run.formats == ("qcow2", "tar") and run.packages == ["vim", "curl", "jq"] and run.compression == "none"


def test_every_disk_image_create_option_is_in_the_table():
    flags = {f for o in OPTIONS for f in o.flags}
    dib = {"-a", "-o", "-t", "-x", "-u", "-c", "-n", "-p", "-h", "--help", "--version", "--checksum",
           "--image-size", "--image-extra-size", "--image-cache", "--max-online-resize", "--mkfs-journal-size",
           "--mkfs-options", "--min-tmpfs", "--no-tmpfs", "--offline", "--qemu-img-options", "--root-label",
           "--ramdisk-element", "--install-type", "--docker-target", "--logfile"}
    assert dib == flags
    assert all(f in usage() for f in flags)


def test_an_option_with_no_meaning_is_accepted_with_one_note():
    run = parse(["--min-tmpfs", "4", "--no-tmpfs", *SEED])
    assert [n.split(":")[0] for n in run.notes] == ["--min-tmpfs", "--no-tmpfs"]


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.kind == REFUSED], ids=lambda o: o.flags[0])
def test_an_option_that_cannot_be_honoured_is_refused_with_the_reason(option):
    args = [option.flags[0]] + (["x"] if option.arg else [])
    with pytest.raises(UsageError) as e:
        parse(args + SEED)
    assert str(e.value) == f"{option.flags[0]}: not supported: {option.here}"


def test_options_dib_exports_become_env():
    run = parse(["--install-type", "package", "--mkfs-journal-size", "32", *SEED])
    assert run.env == {"DIB_DEFAULT_INSTALLTYPE": "package", "DIB_JOURNAL_SIZE": "32"}


def test_image_types_without_a_writer_are_refused():
    with pytest.raises(UsageError, match="-t squashfs: not supported"):
        parse(["-t", "qcow2,squashfs", *SEED])


def test_no_elements_is_refused_as_disk_image_create_does():
    with pytest.raises(UsageError, match="at least one distribution root element"):
        parse(["-o", "x"])
    assert parse(["-h"]).show == "help"


def test_output_name_as_disk_image_create():
    assert output_stem(parse(["-o", "out/img.qcow2", "ubuntu"])) == "out/img"
    assert output_stem(parse(["-o", "out/img.qcow2", "-t", "qcow2,tar", "ubuntu"])) == "out/img.qcow2"
    assert output_stem(parse(["ubuntu"])) == "image"


# --- the cut -----------------------------------------------------------------

def placed(c) -> dict[str, str]:
    return {p.element: p.layer for p in c.placed}


def test_the_seed_elements_are_cut_by_the_rules(cat, paths):
    c = cut(parse(SEED).elements, cat, paths)
    assert (c.distro, c.datastore) == ("ubuntu", "mysql")
    assert placed(c) == {"ubuntu": "base", "vm": "base", "cloud-init-datasources": "base",
                         "ubuntu-guest": "guest", "ubuntu-mysql": "datastore"}
    assert c.extra_elements({"vm", "cloud-init-datasources"}) == ()


def test_an_extra_element_goes_to_base_unless_its_dependencies_sit_higher(tmp_path, cat):
    from factory.elements import search_path

    for name, deps in (("site-tools", "package-installs"), ("guest-tuning", "ubuntu-guest")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "element-deps").write_text(deps + "\n")
    paths = search_path(str(tmp_path))
    c = cut(["ubuntu", "site-tools", "guest-tuning", "ubuntu-guest", "ubuntu-percona"], cat, paths)
    assert placed(c)["site-tools"] == "base"
    assert placed(c)["guest-tuning"] == "guest"
    assert c.datastore == "percona"
    assert c.extra_elements(set()) == ("site-tools", "guest:guest-tuning")


@pytest.mark.parametrize("elements, needle", [
    (["vm", "ubuntu-guest", "ubuntu-mysql"], "no distribution root element"),
    (["ubuntu", "debian", "ubuntu-guest", "ubuntu-mysql"], "2 (ubuntu, debian) distribution root element"),
    (["ubuntu", "ubuntu-guest"], "no datastore element"),
    (["ubuntu", "ubuntu-guest", "ubuntu-mysql", "ubuntu-redis"], "more than one datastore element"),
    (["ubuntu", "ubuntu-mysql"], "no ubuntu-guest element"),
])
def test_a_list_the_stack_cannot_take_is_refused(cat, paths, elements, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        cut(elements, cat, paths)



@pytest.mark.parametrize("raised, code", [
    (UsageError("-n: not supported"), 1), (BuildFailed("base: install.d failed (exit 1)"), 1),
    (OSError(28, "No space left on device", "/out/x"), 1), (KeyboardInterrupt(), 130),
])
def test_factory_dib_exits_as_disk_image_create_does(raised, code):
    import typer
    from typer.testing import CliRunner

    from factory.cli_errors import dib_exit_codes, one_error_path

    app = typer.Typer()

    @app.command()
    @one_error_path
    @dib_exit_codes
    def fails() -> None:
        raise raised

    result = CliRunner().invoke(app, [])
    assert result.exit_code == code
    assert len([l for l in result.output.splitlines() if l.startswith("error: ")]) == 1


def test_outputs_land_where_disk_image_create_puts_them(tmp_path, monkeypatch):
    import hashlib
    import json

    from factory.dib import place_outputs

    monkeypatch.delenv("OVERWRITE_OLD_IMAGE", raising=False)
    keyed = tmp_path / "state"
    keyed.mkdir()

    def artifact(content: bytes):
        (keyed / "ubuntu-focal-mysql-abc.qcow2").write_bytes(content)
        man = keyed / "ubuntu-focal-mysql-abc.manifest.json"
        man.write_text(json.dumps({"images": {"qcow2": {"file": "ubuntu-focal-mysql-abc.qcow2",
                                                        "sha256": hashlib.sha256(content).hexdigest()}}}))
        return man

    stem = str(tmp_path / "out" / "trove-mysql")
    assert place_outputs(artifact(b"one"), stem, checksum=True) == [tmp_path / "out" / "trove-mysql.qcow2"]
    out = tmp_path / "out"
    assert (out / "trove-mysql.qcow2").read_bytes() == b"one"
    assert (out / "trove-mysql.qcow2.sha256").read_text() == f"{hashlib.sha256(b'one').hexdigest()}  trove-mysql.qcow2\n"
    assert (out / "trove-mysql.qcow2.md5").read_text().startswith(hashlib.md5(b"one").hexdigest())
    assert json.loads((out / "trove-mysql.manifest.json").read_text())["images"]["qcow2"]["file"] == "trove-mysql.qcow2"
    place_outputs(artifact(b"one"), stem, checksum=False)  # the same image: left alone
    assert sorted(p.name for p in out.glob("*.qcow2")) == ["trove-mysql.qcow2"]
    place_outputs(artifact(b"two"), stem, checksum=False)  # another: the old one is renamed, as DIB does
    assert (out / "trove-mysql.qcow2").read_bytes() == b"two"
    assert len(list(out.glob("trove-mysql-*.qcow2"))) == 1
