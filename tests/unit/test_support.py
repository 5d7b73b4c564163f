"""The support matrix, from the elements: what each datastore needs."""

from factory import support


def test_vendor_datastores_need_a_repository_or_packages(paths):
    assert support.needs("debian", "mongodb", paths) == "needs DATASTORE_REPO_URL or DATASTORE_PKG_LOCATION"
    assert support.needs("ubuntu", "percona", paths) == "needs DATASTORE_REPO_URL or DATASTORE_PKG_LOCATION"
    assert support.needs("debian", "postgresql", paths) is None


def test_matrix_marks_unreachable_mirrors_and_built_targets(cat):
    rows = support.matrix(cat, lambda d: "DIB_YUM_MINIMAL_BOOTSTRAP_REPOS" if d == "fedora" else None,
                          {"debian-bookworm-redis"})
    by = {(r.distro, r.datastore): r for r in rows}
    assert by["fedora", "postgresql"].status == "needs a mirror not reachable here (DIB_YUM_MINIMAL_BOOTSTRAP_REPOS)"
    assert by["debian", "redis"].status == "builds from the distro archive" and by["debian", "redis"].built_here
    assert not by["debian", "postgresql"].built_here
    assert by["ubuntu", "couchbase"].status.startswith("needs DATASTORE_REPO_URL")
