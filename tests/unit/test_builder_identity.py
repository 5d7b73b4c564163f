"""The builder is named in layer keys by its recipe, so that CI runners on
different machines, each with its own builder image, share layers."""

from factory.engine.builder import BOOTSTRAP_REPO, base_identity, builder_tag


def test_a_bootstrapped_base_is_named_by_its_recipe_not_its_id():
    ref = f"{BOOTSTRAP_REPO}:debian-bookworm-0123456789abcdef"
    assert base_identity(ref, [], "sha256:aaa") == base_identity(ref, [], "sha256:bbb") == ref


def test_a_pulled_base_is_named_by_its_registry_digest():
    digests = ["debian@sha256:feed", "mirror.example/debian@sha256:feed"]
    assert base_identity("debian:bookworm", digests, "sha256:aaa") == "debian@sha256:feed"
    assert base_identity("debian:bookworm", list(reversed(digests)), "sha256:bbb") == "debian@sha256:feed"


def test_an_image_only_this_host_has_is_named_by_its_id():
    assert base_identity("my-base:1", [], "sha256:aaa") == "sha256:aaa"


def test_two_machines_with_one_recipe_get_one_builder_tag_and_another_base_another():
    ref = f"{BOOTSTRAP_REPO}:debian-bookworm-0123456789abcdef"
    one, other = (builder_tag(base_identity(ref, [], i)) for i in ("sha256:aaa", "sha256:bbb"))
    assert one == other
    assert builder_tag(base_identity("debian:bookworm", ["debian@sha256:beef"], "sha256:aaa")) != one
