"""The layer stack read from layers/*.yaml."""

from __future__ import annotations

import textwrap

import pytest

from factory import LAYERS_DIR
from factory.errors import FactoryError
from factory.layers import BUILD_PHASES, LayerSpec, load_meta, load_stack, render


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_real_stack_order_and_roles():
    stack = load_stack(LAYERS_DIR)
    assert [l.name for l in stack] == ["base", "guest", "datastore"]
    base, guest, datastore = stack
    assert base.phases[0] == "root"
    assert "root" not in guest.phases and "root" not in datastore.phases
    assert all(p in BUILD_PHASES for l in stack for p in l.phases)
    assert "{distro}-minimal" in base.elements
    assert guest.elements == ("{distro}-guest",)
    assert datastore.elements == ("{distro}-{datastore}",)
    # the user's --element values land in base, --package values in datastore
    assert [l.name for l in stack if l.extra_elements] == ["base"]
    assert [l.name for l in stack if l.extra_packages] == ["datastore"]
    assert "package-installs" in guest.rerun and "package-installs" in datastore.rerun


def test_real_stack_renders_element_names():
    _, guest, datastore = load_stack(LAYERS_DIR)
    values = {"distro": "ubuntu", "release": "noble", "datastore": "mysql", "arch": "amd64"}
    assert guest.element_names(values) == ["ubuntu-guest"]
    assert datastore.element_names(values) == ["ubuntu-mysql"]


def test_site_layer_slots_between_guest_and_datastore(layers_copy):
    write(
        layers_copy / "25-site-hardening.yaml",
        """
        name: site-hardening
        phases: [install, post-install]
        elements: [devuser]
        env: [DEVUSER_USERNAME]
        """,
    )
    stack = load_stack(layers_copy)
    assert [l.name for l in stack] == ["base", "guest", "site-hardening", "datastore"]
    site = stack[2]
    assert site.phases == ("install", "post-install")
    assert site.elements == ("devuser",)
    assert site.env == ("DEVUSER_USERNAME",)
    assert site.source == layers_copy / "25-site-hardening.yaml"


def test_underscore_files_are_not_layers(layers_copy):
    assert (layers_copy / "_distros.yaml").exists()
    write(layers_copy / "_notes.yaml", "name: not-a-layer\nphases: [install]\n")
    assert "not-a-layer" not in [l.name for l in load_stack(layers_copy)]


@pytest.mark.parametrize("phase", ["compile", "finalise", "block-device"])
def test_unknown_phase(layers_copy, phase):
    write(layers_copy / "25-x.yaml", f"name: x\nphases: [install, {phase}]\nelements: [devuser]\n")
    with pytest.raises(FactoryError) as e:
        load_stack(layers_copy)
    msg = str(e.value)
    assert "25-x.yaml" in msg and phase in msg and "post-install" in msg


def test_root_phase_only_in_first_layer(layers_copy):
    write(layers_copy / "25-x.yaml", "name: x\nphases: [root, install]\nelements: [devuser]\n")
    with pytest.raises(FactoryError, match=r"25-x\.yaml.*only the first layer"):
        load_stack(layers_copy)


def test_first_layer_needs_root(layers_copy):
    write(layers_copy / "05-early.yaml", "name: early\nphases: [install]\nelements: [devuser]\n")
    with pytest.raises(FactoryError, match=r"05-early\.yaml.*first layer must run the 'root' phase"):
        load_stack(layers_copy)


def test_duplicate_layer_names(layers_copy):
    write(layers_copy / "25-x.yaml", "name: guest\nphases: [install]\nelements: [devuser]\n")
    with pytest.raises(FactoryError, match="guest.*declared twice"):
        load_stack(layers_copy)


def test_bad_template_field(layers_copy):
    write(layers_copy / "25-x.yaml", "name: x\nphases: [install]\nelements: ['{distro}-{flavour}']\n")
    with pytest.raises(FactoryError) as e:
        load_stack(layers_copy)
    msg = str(e.value)
    assert "flavour" in msg and "25-x.yaml" in msg and "datastore" in msg


@pytest.mark.parametrize("text", ["phases: [install]\n", "- a\n", "name: [x\n"])
def test_malformed_layer_file(layers_copy, text):
    write(layers_copy / "25-x.yaml", text)
    with pytest.raises(FactoryError, match="25-x.yaml"):
        load_stack(layers_copy)


def test_empty_layers_dir(tmp_path):
    with pytest.raises(FactoryError, match="no layer files"):
        load_stack(tmp_path)


def test_render():
    assert render("{distro}-{datastore}", {"distro": "debian", "datastore": "redis"}) == "debian-redis"
    assert render("vm", {}) == "vm"


@pytest.mark.parametrize("values", [{"distro": "debian"}, {"distro": "debian", "datastore": None}])
def test_render_missing_value(values):
    with pytest.raises(FactoryError, match="'datastore'"):
        render("{distro}-{datastore}", values)


def test_layerspec_element_names_missing_value():
    spec = LayerSpec(name="x", phases=("install",), elements=("{distro}-{release}",))
    with pytest.raises(FactoryError, match="release"):
        spec.element_names({"distro": "debian", "release": None})


# --- FACTORY_LAYERS_PATH: a user's own layer folder before the repository's ---


SITE = """
name: site-hardening
phases: [install, post-install]
elements: [devuser]
"""


def test_layers_path_adds_site_layer(tmp_path, monkeypatch):
    site = tmp_path / "site-layers"
    site.mkdir()
    write(site / "25-site-hardening.yaml", SITE)
    monkeypatch.setenv("FACTORY_LAYERS_PATH", str(site))
    stack = load_stack()
    assert [l.name for l in stack] == ["base", "guest", "site-hardening", "datastore"]
    assert stack[0].source == LAYERS_DIR / "10-base.yaml"
    # the repository's distro facts still apply
    assert load_meta()["debian"]["default_release"] == "bookworm"


def test_layers_path_file_of_same_name_wins(tmp_path, monkeypatch):
    site = tmp_path / "site-layers"
    site.mkdir()
    write(site / "20-guest.yaml", "name: guest\nphases: [install]\nelements: ['{distro}-guest', devuser]\n")
    write(site / "_distros.yaml", "debian: {default_release: trixie}\n")
    monkeypatch.setenv("FACTORY_LAYERS_PATH", str(site))
    stack = load_stack()
    assert [l.name for l in stack] == ["base", "guest", "datastore"]
    assert stack[1].elements == ("{distro}-guest", "devuser")
    assert stack[1].source == site / "20-guest.yaml"
    assert load_meta()["debian"]["default_release"] == "trixie"


def test_layers_path_missing_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_LAYERS_PATH", str(tmp_path / "nope"))
    with pytest.raises(FactoryError, match="FACTORY_LAYERS_PATH"):
        load_stack()


def test_default_is_repository_layers():
    assert [l.name for l in load_stack()] == [l.name for l in load_stack(LAYERS_DIR)]
