"""The hooks tree (TMP_HOOKS_PATH) a layer runs, laid out as disk-image-create does."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.elements import Element
from factory.engine.phases import has_hooks, make_hooks
from factory.errors import FactoryError
from factory.layers import BUILD_PHASES


def element(root: Path, name: str, files: dict[str, str]) -> Element:
    path = root / "elements" / name
    path.mkdir(parents=True)
    for rel, text in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return Element(name, path)


def test_duplicate_hook_names_both_elements(tmp_path):
    a = element(tmp_path, "alpha-elem", {"install.d/50-same": "#!/bin/sh\n"})
    b = element(tmp_path, "beta-elem", {"install.d/50-same": "#!/bin/sh\n"})
    els = {"alpha-elem": a, "beta-elem": b}
    with pytest.raises(FactoryError) as e:
        make_hooks(tmp_path / "hooks", els, els, BUILD_PHASES)
    msg = str(e.value)
    assert "alpha-elem" in msg and "beta-elem" in msg and "install.d/50-same" in msg


def test_same_hook_name_ok_when_lower_element_does_not_run(tmp_path):
    lower = element(tmp_path, "lower", {"install.d/50-same": "lower\n"})
    upper = element(tmp_path, "upper", {"install.d/50-same": "upper\n"})
    make_hooks(tmp_path / "hooks", {"lower": lower, "upper": upper}, {"upper": upper}, BUILD_PHASES)
    assert (tmp_path / "hooks" / "install.d" / "50-same").read_text() == "upper\n"


def test_non_phase_folders_of_two_elements_are_both_copied(tmp_path):
    """Folders other than phase folders come from every visible element."""
    a = element(tmp_path, "a", {"static/etc/a.conf": "a\n"})
    b = element(tmp_path, "b", {"static/opt/b.conf": "b\n"})
    make_hooks(tmp_path / "hooks", {"a": a, "b": b}, {"b": b}, BUILD_PHASES)
    assert (tmp_path / "hooks" / "static" / "etc" / "a.conf").is_file()
    assert (tmp_path / "hooks" / "static" / "opt" / "b.conf").is_file()


def test_duplicate_environment_file_is_an_error(tmp_path):
    a = element(tmp_path, "a", {"environment.d/10-x.bash": "export A=1\n"})
    b = element(tmp_path, "b", {"environment.d/10-x.bash": "export B=1\n"})
    with pytest.raises(FactoryError, match="environment.d/10-x.bash"):
        make_hooks(tmp_path / "hooks", {"a": a, "b": b}, {"b": b}, BUILD_PHASES)


def test_phase_dirs_only_from_runs_env_and_bin_from_all(tmp_path):
    lower = element(
        tmp_path,
        "lower",
        {
            "install.d/10-lower": "#!/bin/sh\n",
            "post-install.d/10-lower": "#!/bin/sh\n",
            "environment.d/10-lower.bash": "export LOWER=1\n",
            "bin/lower-tool": "#!/bin/sh\n",
            "static/etc/lower.conf": "x\n",
        },
    )
    upper = element(
        tmp_path,
        "upper",
        {
            "install.d/20-upper": "#!/bin/sh\n",
            "environment.d/20-upper.bash": "export UPPER=1\n",
            "bin/upper-tool": "#!/bin/sh\n",
            "tests/README": "not for images\n",
        },
    )
    hooks = tmp_path / "hooks"
    make_hooks(hooks, {"lower": lower, "upper": upper}, {"upper": upper}, ("install", "post-install"))

    assert (hooks / "install.d" / "20-upper").is_file()
    assert not (hooks / "install.d" / "10-lower").exists()
    assert not (hooks / "post-install.d" / "10-lower").exists()
    assert not has_hooks(hooks, "post-install")
    assert has_hooks(hooks, "install")

    assert (hooks / "environment.d" / "10-lower.bash").read_text() == "export LOWER=1\n"
    assert (hooks / "environment.d" / "20-upper.bash").is_file()
    assert (hooks / "environment.d" / "11-dib-install-type.bash").is_file()
    assert (hooks / "bin" / "lower-tool").is_file() and (hooks / "bin" / "upper-tool").is_file()
    assert (hooks / "static" / "etc" / "lower.conf").is_file()
    assert not (hooks / "tests").exists()
    assert (hooks / "dib-run-parts").is_file()


def test_phase_dir_outside_layer_phases_not_copied(tmp_path):
    e = element(
        tmp_path,
        "e",
        {
            "root.d/10-root": "#!/bin/sh\n",
            "install.d/10-install": "#!/bin/sh\n",
            "finalise.d/10-finalise": "#!/bin/sh\n",
            "cleanup.d/10-cleanup": "#!/bin/sh\n",
        },
    )
    hooks = tmp_path / "hooks"
    make_hooks(hooks, {"e": e}, {"e": e}, ("install",))
    assert (hooks / "install.d" / "10-install").is_file()
    for d in ("root.d", "finalise.d", "cleanup.d"):
        assert not (hooks / d).exists(), d


def test_assembly_gets_all_phases(tmp_path):
    e = element(tmp_path, "e", {"finalise.d/10-f": "#!/bin/sh\n", "block-device.d/10-b": "#!/bin/sh\n"})
    hooks = tmp_path / "hooks"
    make_hooks(hooks, {"e": e}, {"e": e}, ("block-device", "finalise"))
    assert (hooks / "finalise.d" / "10-f").is_file() and (hooks / "block-device.d" / "10-b").is_file()


def test_hook_mode_and_symlinks_kept(tmp_path):
    e = element(tmp_path, "e", {"install.d/10-run": "#!/bin/sh\n"})
    (e.path / "install.d" / "10-run").chmod(0o755)
    (e.path / "install.d" / "11-link").symlink_to("10-run")
    hooks = tmp_path / "hooks"
    make_hooks(hooks, {"e": e}, {"e": e}, ("install",))
    assert (hooks / "install.d" / "10-run").stat().st_mode & 0o111
    assert (hooks / "install.d" / "11-link").is_symlink()


def real_plan(target, paths, monkeypatch, **kw):
    import factory.plan as plan_mod

    monkeypatch.setattr(plan_mod, "host_mirrors", lambda distro, *a, **k: {})
    return plan_mod.plan_stack(target("debian", "postgresql", **kw), builder_id="sha256:test", paths=paths)


def test_real_layers_lay_out_their_hooks(tmp_path, target, paths, monkeypatch):
    for layer in real_plan(target, paths, monkeypatch).layers:
        hooks = tmp_path / layer.name
        make_hooks(hooks, layer.visible, layer.runs, layer.spec.phases)
        assert (hooks / "environment.d" / "10-trove-guest.bash").exists() == (layer.name != "base")
        if layer.name == "base":
            assert has_hooks(hooks, "root")  # debian-minimal's debootstrap
        else:
            assert not (hooks / "root.d").exists()
    # the datastore layer runs its own hook, and not the guest's
    assert (tmp_path / "datastore" / "post-install.d" / "60-postgresql-enable").is_file()
    assert not (tmp_path / "datastore" / "install.d" / "60-trove-guest-agent").exists()
    assert (tmp_path / "guest" / "install.d" / "60-trove-guest-agent").is_file()


def test_static_folders_of_two_elements_merge_as_in_dib(tmp_path, target, paths, monkeypatch):
    base = real_plan(target, paths, monkeypatch, elements=("growroot",)).layers[0]
    assert {"growroot", "runtime-ssh-host-keys"} <= set(base.runs)
    hooks = tmp_path / "hooks"
    make_hooks(hooks, base.visible, base.runs, base.spec.phases)
    sbin = hooks / "static" / "usr" / "local" / "sbin"
    assert (sbin / "growroot").is_file()
    assert (sbin / "runtime-ssh-host-keys.sh").is_file()
