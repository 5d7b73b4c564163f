"""The pure parts of the remote cache: URLs, settings, the S3 layout and
records, the docker-load archive, retries, prune selection."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from factory.errors import FactoryError
from factory.store.prune import parse_age, prunable
from factory.store.cache import CacheSettings, RemoteCache, cache_settings
from factory.store.remote import Refused, RemoteURL, RetryPolicy, Transfer, Unreachable, parse_created, parse_url
from factory.store.s3 import ExportStream, Layout, check_config, load_archive, make_record, spool, unpack

KEY = "a" * 64


def test_cache_urls():
    assert parse_url("oci://127.0.0.1:5000/factory/layers") == RemoteURL("oci", "127.0.0.1:5000", "factory/layers")
    assert parse_url("s3://bucket/team/layers/") == RemoteURL("s3", "bucket", "team/layers")
    assert parse_url("s3://bucket") == RemoteURL("s3", "bucket", "")
    assert str(parse_url("s3://bucket")) == "s3://bucket"
    assert str(parse_url("oci://reg:5000/x")) == "oci://reg:5000/x"


@pytest.mark.parametrize("text, says", [
    ("http://reg/x", "oci://HOST[:PORT]/REPO"),
    ("reg:5000/x", "not a cache URL"),
    ("oci://reg:5000", "lowercase repository"),
    ("oci://reg/Layers", "lowercase repository"),
    ("s3://user@bucket/x", "credentials"),
    ("s3:///x", "names no bucket"),
])
def test_bad_cache_urls_say_what_to_write(text, says):
    with pytest.raises(FactoryError) as e:
        parse_url(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_credentials_in_a_url_are_never_repeated():
    with pytest.raises(FactoryError) as e:
        parse_url("s3://user:secret@bucket/x")
    assert "secret" not in str(e.value)


def test_cache_settings_flags_over_environment_over_file(tmp_path):
    config = tmp_path / "factory.yaml"
    config.write_text("cache:\n  from: [oci://file:5000/l]\n  to: s3://file/l\n  s3-endpoint-url: http://127.0.0.1:1\n  required: true\n")
    from_file = cache_settings([], None, False, None, config, environ={})
    assert from_file.sources == ("oci://file:5000/l",) and from_file.destination == "s3://file/l"
    assert from_file.required and from_file.s3_endpoint_url == "http://127.0.0.1:1"
    env = {"FACTORY_CACHE_FROM": "oci://env:5000/a, s3://env/b", "FACTORY_CACHE_TO": "oci://env:5000/a"}
    from_env = cache_settings([], None, False, None, config, environ=env)
    assert from_env.sources == ("oci://env:5000/a", "s3://env/b") and from_env.destination == "oci://env:5000/a"
    flags = cache_settings(["s3://flag/x"], "s3://flag/y", False, None, config, environ=env)
    assert flags.sources == ("s3://flag/x",) and flags.destination == "s3://flag/y"
    assert cache_settings([], None, False, None, None, environ={}).sources == ()


def test_cache_settings_reject_unknown_keys_and_bad_urls(tmp_path):
    config = tmp_path / "factory.yaml"
    config.write_text("cache:\n  form: [oci://x:1/l]\n")
    with pytest.raises(FactoryError, match="unknown setting"):
        cache_settings([], None, False, None, config, environ={})
    with pytest.raises(FactoryError, match="not a cache URL"):
        cache_settings(["registry:5000/x"], None, False, None, None, environ={})


def test_s3_layout_names_blobs_by_digest_and_records_by_key():
    layout = Layout("team/layers")
    assert layout.blob("sha256:" + "b" * 64) == "team/layers/blobs/sha256/" + "b" * 64
    assert layout.record(KEY) == f"team/layers/layers/{KEY}.json"
    assert layout.records == "team/layers/layers/"
    assert Layout("").record(KEY) == f"layers/{KEY}.json" and Layout("").blobs == "blobs/"


def _config(key: str = KEY) -> bytes:
    return json.dumps({"created": "2026-11-25T17:23:43.123456789Z",
                       "config": {"Labels": {"org.factory.key": key, "org.factory.layer": "guest", "org.factory.parent": "p" * 64}},
                       "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64]}}).encode()


def test_a_record_names_the_config_and_every_diff_in_order():
    raw = _config()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    record = make_record(KEY, digest, json.loads(raw))
    assert record["layer"] == "guest" and record["parent"] == "p" * 64 and record["config"] == digest
    assert record["layers"] == ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    assert check_config(KEY, record, raw)["rootfs"]["diff_ids"] == record["layers"]


def test_a_config_that_does_not_match_its_record_is_refused():
    raw = _config()
    record = make_record(KEY, "sha256:" + hashlib.sha256(raw).hexdigest(), json.loads(raw))
    flipped = raw.replace(b"guest", b"guesT")
    with pytest.raises(Refused, match="corrupt or tampered"):
        check_config(KEY, record, flipped)
    with pytest.raises(Refused):
        check_config("c" * 64, record, raw)  # a record moved under another key
    other = _config("d" * 64)  # a config honest about its bytes, for another key
    with pytest.raises(Refused, match="does not carry"):
        check_config(KEY, {**record, "config": "sha256:" + hashlib.sha256(other).hexdigest()}, other)


def test_the_load_archive_is_a_tar_docker_can_read(tmp_path):
    blob = tmp_path / "diff"
    blob.write_bytes(b"x" * 1500)
    diffs = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    data = b"".join(load_archive(KEY, "sha256:" + "c" * 64, b"{}", diffs, {diffs[1]: blob}))
    tar = tarfile.open(fileobj=io.BytesIO(data))
    assert tar.getnames() == ["manifest.json", "c" * 64 + ".json", "2" * 64 + "/layer.tar"]
    manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest == [{"Config": "c" * 64 + ".json", "RepoTags": [f"factory-layer:{KEY}"],
                         "Layers": ["1" * 64 + "/layer.tar", "2" * 64 + "/layer.tar"]}]
    assert tar.extractfile("2" * 64 + "/layer.tar").read() == b"x" * 1500


def test_retries_back_off_then_give_up_as_unreachable():
    policy = RetryPolicy(attempts=4, first=1.0, factor=2.0, cap=3.0)
    assert policy.delays() == [1.0, 2.0, 3.0]
    slept, calls = [], []

    def failing():
        calls.append(1)
        raise ConnectionError("connection refused")

    with pytest.raises(Unreachable, match="pulling: connection refused"):
        policy.call(failing, lambda e: isinstance(e, ConnectionError), "pulling", sleep=slept.append)
    assert len(calls) == 4 and slept == [1.0, 2.0, 3.0]


def test_retries_stop_at_success_and_never_retry_a_permanent_error():
    slept, answers = [], iter([ConnectionError("reset"), "ok"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    transient = lambda e: isinstance(e, ConnectionError)  # noqa: E731
    assert RetryPolicy().call(flaky, transient, "x", sleep=slept.append) == "ok" and slept == [1.0]
    with pytest.raises(KeyError):
        RetryPolicy().call(lambda: {}["missing"], transient, "x", sleep=slept.append)
    assert slept == [1.0]


def test_prune_keeps_what_a_kept_layer_builds_on():
    day = 86400.0
    now = 100 * day
    layers = {
        "base": ("", now - 60 * day),
        "guest": ("base", now - 50 * day),
        "old-ds": ("guest", now - 40 * day),
        "new-ds": ("guest", now - 1 * day),
        "other-base": ("", now - 45 * day),
    }
    assert prunable(layers, 30 * day, now) == {"old-ds", "other-base"}
    assert prunable(layers, 90 * day, now) == set()
    assert parse_age("30d") == 30 * day
    with pytest.raises(FactoryError, match="not an age"):
        parse_age("a month")


def test_image_created_times():
    assert parse_created("2026-11-25T17:23:43.123456789Z") == parse_created("2026-11-25T17:23:43Z") > 0
    assert parse_created("") == 0.0


def test_the_engines_export_reads_as_a_tar_stream():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, size in (("1" * 64 + "/layer.tar", 3_000_001), ("c.json", 10)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    data = raw.getvalue()
    chunks = iter([data[i:i + 65536] for i in range(0, len(data), 65536)])
    stream = tarfile.open(fileobj=io.BufferedReader(ExportStream(chunks), 1 << 20), mode="r|")
    assert {m.name: len(stream.extractfile(m).read()) for m in stream} == {"1" * 64 + "/layer.tar": 3_000_001, "c.json": 10}


class FakeStore:
    """A store in memory: keys it has, keys whose bytes are bad, or no answer at all."""

    def __init__(self, has=(), bad=(), down=False, attachments=None):
        self.keys, self.bad, self.down = set(has), set(bad), down
        self.pushed: list[str] = []
        self.attachments: dict[str, dict[str, bytes]] = attachments or {}

    def push_attachments(self, key, files):
        self._answer()
        self.attachments[key] = dict(files)

    def pull_attachments(self, key):
        self._answer()
        return dict(self.attachments.get(key, {}))

    def _answer(self):
        if self.down:
            raise Unreachable("connection refused")

    def has(self, key):
        self._answer()
        return key in self.keys

    def pull(self, key):
        self._answer()
        if key in self.bad:
            raise Refused("blob does not match its digest")
        return Transfer(10, 1.0) if key in self.keys else None

    def push(self, key):
        self._answer()
        self.pushed.append(key)
        self.keys.add(key)
        self.bad.discard(key)
        return Transfer(5, 0.5)


@pytest.fixture(autouse=True)
def documents(monkeypatch, tmp_path):
    """A layer's documents, without an engine to make them from."""
    monkeypatch.setenv("FACTORY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("factory.attest.ensure", lambda key, signing_key=None: {"provenance.json": key.encode()})


def _cache(stores: dict, **settings) -> RemoteCache:
    cache = RemoteCache(CacheSettings(**settings))
    cache.stores.update(stores)
    return cache


def test_a_layer_comes_from_the_first_cache_that_has_it_and_answers():
    down, empty, full = FakeStore(down=True), FakeStore(), FakeStore(has={"k"})
    cache = _cache({"oci://a:1/x": down, "s3://b/x": empty, "s3://c/x": full}, sources=("oci://a:1/x", "s3://b/x", "s3://c/x"))
    assert cache.pull("base", "k") == Transfer(10, 1.0)
    assert cache.down == {"oci://a:1/x"}  # asked once: not again in this build
    down.down = False
    assert cache.pull("guest", "other") is None


def test_a_required_cache_that_does_not_answer_stops_the_build():
    cache = _cache({"oci://a:1/x": FakeStore(down=True)}, sources=("oci://a:1/x",), required=True)
    with pytest.raises(FactoryError, match="--cache-required"):
        cache.pull("base", "k")


def test_a_refused_layer_is_pushed_again_and_a_present_one_is_not():
    store = FakeStore(has={"base", "guest"}, bad={"guest"})
    cache = _cache({"oci://a:1/x": store}, sources=("oci://a:1/x",), destination="oci://a:1/x")
    assert cache.pull("guest", "guest") is None
    sent = cache.push([("base", "base"), ("guest", "guest"), ("datastore", "ds")])
    assert store.pushed == ["guest", "ds"] and set(sent) == {"guest", "ds"}
    assert set(store.attachments) == {"guest", "ds"}  # the documents travel with the layer


def test_a_destination_that_goes_away_stops_the_pushes_not_the_build():
    store = FakeStore(down=True)
    cache = _cache({"s3://b/x": store}, destination="s3://b/x")
    assert cache.push([("base", "k1"), ("guest", "k2")]) == {} and cache.down == {"s3://b/x"}


def test_blobs_are_stored_compressed_and_named_by_their_uncompressed_bytes(tmp_path):
    raw = b"a filesystem diff " * 50000
    digest, packed = spool(io.BytesIO(raw), tmp_path, compress=True)
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert packed.stat().st_size < len(raw) // 10
    again, unpacked = unpack(io.BytesIO(packed.read_bytes()), tmp_path)
    assert again == digest and unpacked.read_bytes() == raw


@pytest.mark.parametrize("damage", ["flip", "cut", "append"])
def test_a_damaged_blob_never_unpacks_to_its_digest(tmp_path, damage):
    raw = bytes(range(256)) * 4096
    digest, packed = spool(io.BytesIO(raw), tmp_path, compress=True)
    data = bytearray(packed.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "cut":
        del data[-100:]
    else:
        data += b"more"
    try:
        actual, _ = unpack(io.BytesIO(bytes(data)), tmp_path)
    except Refused:
        return
    assert actual != digest
