"""Whose things a sweep may release: an owner in another PID namespace (a
factory in a container sharing the host's state folder and engine) is judged
by its container, never by a PID that means something else here."""

import os

from factory import owners

NEVER = lambda cid: (_ for _ in ()).throw(AssertionError("the engine was asked"))  # noqa: E731


def test_an_owner_in_this_namespace_is_judged_by_its_pid_and_start():
    me = owners.identity()
    assert owners.owner_alive(me["pid"], me["started"], me["namespace"], "", NEVER)
    assert not owners.owner_alive(me["pid"], "1", me["namespace"], "", NEVER)  # a reused PID
    assert not owners.owner_alive("", "", me["namespace"], "", NEVER)


def test_an_owner_in_another_namespace_is_judged_by_its_container():
    me = owners.identity()
    other = "pid:[1]" if me["namespace"] != "pid:[1]" else "pid:[2]"
    # Its PID is this process's own: that must not make it alive, nor dead.
    assert owners.owner_alive(me["pid"], "x", other, "c" * 64, lambda cid: cid == "c" * 64)
    assert not owners.owner_alive(me["pid"], me["started"], other, "c" * 64, lambda cid: False)


def test_an_owner_in_another_namespace_and_no_known_container_is_left_alone():
    assert owners.owner_alive("1", "x", "pid:[1]" if owners.pid_namespace() != "pid:[1]" else "pid:[2]", "", NEVER)


def test_a_record_written_here_names_this_namespace(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_STATE_DIR", str(tmp_path))
    path = owners.record(owners.FOLDER, tmp_path / "work")
    (rec,) = owners.records()
    assert rec.path == path and rec.pid == os.getpid() and rec.namespace == owners.pid_namespace()
    assert not rec.foreign and owners.orphaned(NEVER) == []


def test_records_from_before_namespaces_were_named_count_as_this_namespace(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_STATE_DIR", str(tmp_path))
    (tmp_path / "owned").mkdir()
    (tmp_path / "owned" / "folder-1.json").write_text('{"kind": "folder", "what": "/x", "pid": 999999999, "started": "1"}')
    (rec,) = owners.orphaned(NEVER)
    assert not rec.foreign
