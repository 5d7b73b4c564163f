"""The Swift fixture itself: both APIs answer, as the S3 and Swift clients use them."""

from __future__ import annotations

import urllib.request

import pytest

pytestmark = pytest.mark.servers  # starts a real Swift on 127.0.0.1


def test_s3_api_round_trip_multipart_and_bulk_delete(swift_server):
    s3 = swift_server.s3_client()
    s3.create_bucket(Bucket="fixture-check")
    s3.put_object(Bucket="fixture-check", Key="small", Body=b"hello")
    assert s3.get_object(Bucket="fixture-check", Key="small")["Body"].read() == b"hello"

    up = s3.create_multipart_upload(Bucket="fixture-check", Key="big")
    parts = []
    for n, chunk in enumerate((b"a" * (5 << 20), b"b" * 10), start=1):
        r = s3.upload_part(Bucket="fixture-check", Key="big", UploadId=up["UploadId"], PartNumber=n, Body=chunk)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket="fixture-check", Key="big", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket="fixture-check", Key="big")["ContentLength"] == (5 << 20) + 10

    gone = s3.delete_objects(Bucket="fixture-check", Delete={"Objects": [{"Key": "small"}, {"Key": "big"}]})
    assert len(gone.get("Deleted", [])) == 2 and not gone.get("Errors")


def test_native_swift_with_tempauth(swift_server):
    storage_url, token = swift_server.token()
    assert storage_url.startswith("http://127.0.0.1:")
    for method, path, data in (("PUT", "/native-check", None), ("PUT", "/native-check/obj", b"swift")):
        urllib.request.urlopen(urllib.request.Request(storage_url + path, data=data, method=method,
                                                      headers={"X-Auth-Token": token}), timeout=10).close()
    req = urllib.request.Request(storage_url + "/native-check/obj", headers={"X-Auth-Token": token})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.read() == b"swift"
