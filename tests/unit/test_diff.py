"""`factory diff`'s comparison: two trees, file by file (no engine)."""

from __future__ import annotations

import io
import json
import tarfile

from factory import compare, diff


def _tar(path, files: dict[str, tuple[bytes, int, int]], dirs=("etc",)):
    """files: name -> (content, mode, mtime)."""
    with tarfile.open(path, "w") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 100
            tar.addfile(info)
        for name, (data, mode, mtime) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))
    return path


def _entries(path):
    with tarfile.open(path) as tar:
        return diff.entries(tar)


def test_each_path_that_differs_is_named_with_what_differs(tmp_path):
    a = _tar(tmp_path / "a.tar", {"etc/machine-id": (b"1234\n", 0o444, 100), "etc/hostname": (b"db\n", 0o644, 100),
                                  "var/log/dpkg.log": (b"log", 0o644, 100)})
    b = _tar(tmp_path / "b.tar", {"etc/machine-id": (b"5678\n", 0o444, 100), "etc/hostname": (b"db\n", 0o600, 200),
                                  "usr/lib/x.pyc": (b"pyc", 0o644, 100)})
    changes = diff.compare(_entries(a), _entries(b))
    assert [(c.path, c.what, c.fields) for c in changes] == [
        ("/etc/hostname", "differs", ("mode", "mtime")),
        ("/etc/machine-id", "differs", ("sha256",)),
        ("/usr/lib/x.pyc", "only in B", ()),
        ("/var/log/dpkg.log", "only in A", ()),
    ]
    assert diff.summary(changes) == {"mode": 1, "mtime": 1, "sha256": 1, "only in B": 1, "only in A": 1}
    assert changes[0].line() == "differs: /etc/hostname: mode 0644 -> 0600; mtime 100 -> 200"


def test_the_same_tree_twice_has_no_difference(tmp_path):
    files = {"etc/os-release": (b"ID=debian\n", 0o644, 100)}
    assert compare.run(str(_tar(tmp_path / "a.tar", files)), str(_tar(tmp_path / "b.tar", files))) == []


def test_a_layer_diff_digest_is_the_sha256_of_its_tarball(tmp_path):
    path = _tar(tmp_path / "a.tar", {"etc/x": (b"x", 0o644, 1)})
    reader = diff.HashingReader(open(path, "rb"))
    tree = diff.entries(tarfile.open(fileobj=reader, mode="r|"))
    import hashlib

    assert reader.finish() == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(tree) == {"/etc", "/etc/x"}


def test_two_manifests_name_their_layers_packages_and_files(tmp_path):
    for side, version in (("a", "15+248"), ("b", "15+249")):
        _tar(tmp_path / f"{side}.tar", {"usr/bin/psql": (version.encode(), 0o755, 1)})
        (tmp_path / f"{side}.manifest.json").write_text(json.dumps({
            "target": {}, "images": {"tar": {"file": f"{side}.tar", "sha256": side * 8, "bytes": 1}},
            "layers": [{"layer": "datastore", "key": side * 64, "packages_added": [f"postgresql={version}"]}]}))
    lines = compare.run(str(tmp_path / "a.manifest.json"), str(tmp_path / "b.manifest.json"))
    assert lines == [
        "layer datastore: key aaaaaaaaaaaaaaaa -> bbbbbbbbbbbbbbbb",
        "layer datastore: package only in A: postgresql=15+248",
        "layer datastore: package only in B: postgresql=15+249",
        "image tar: sha256 aaaaaaaa -> bbbbbbbb",
        "differs: /usr/bin/psql: sha256 "
        + f"{diff.compare(_entries(tmp_path / 'a.tar'), _entries(tmp_path / 'b.tar'))[0].a.sha256} -> "
        + f"{diff.compare(_entries(tmp_path / 'a.tar'), _entries(tmp_path / 'b.tar'))[0].b.sha256}",
    ]


def test_the_tree_digest_follows_contents_and_modes_not_mtimes(tmp_path):
    one = _entries(_tar(tmp_path / "1.tar", {"etc/x": (b"x", 0o644, 1)}))
    later = _entries(_tar(tmp_path / "2.tar", {"etc/x": (b"x", 0o644, 999)}))
    other_mode = _entries(_tar(tmp_path / "3.tar", {"etc/x": (b"x", 0o600, 1)}))
    assert diff.tree_digest(one) == diff.tree_digest(later) != diff.tree_digest(other_mode)
