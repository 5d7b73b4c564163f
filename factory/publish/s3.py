"""Publish to S3 (or Swift's S3 API, Ceph, MinIO) with boto3 and the standard
AWS configuration. Large images go up in parts, each with its Content-MD5
checked by the server, and the whole object's ETag checked at the end."""

from __future__ import annotations

import base64
import contextlib
import hashlib

from factory.errors import PublishFailed
from factory.publish import Options, Published, failure, stream, targets
from factory.publish.artifact import Artifact
from factory.s3client import s3_client


def _md5_header(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _expect_etag(got: str, want: str, key: str) -> None:
    if got.strip('"') != want:
        raise PublishFailed(f"the server's checksum of {key} ({got.strip(chr(34))}) is not the one sent ({want}); "
                           "publish again")


def _put(s3, bucket: str, key: str, data: bytes, content_type: str, meta: dict[str, str]) -> None:
    digest = hashlib.md5(data).digest()
    r = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentMD5=_md5_header(digest), ContentType=content_type,
                      Metadata=meta)
    _expect_etag(r["ETag"], digest.hex(), key)


def _already_there(s3, bucket: str, key: str, artifact: Artifact) -> bool:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return head["ContentLength"] == artifact.bytes and head.get("Metadata", {}).get("factory-sha256") == artifact.sha256


def _abort_unfinished(s3, bucket: str, key: str) -> None:
    """Parts an interrupted publish of this very image left behind."""
    listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
    for upload in listing.get("Uploads", []):
        if upload["Key"] == key:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])


def _upload_image(s3, bucket: str, key: str, artifact: Artifact, part_size: int) -> None:
    where = f"s3://{bucket}/{key}"
    meta = artifact.metadata()
    with stream.reading(artifact.image, artifact.bytes, where) as reader:
        if artifact.bytes <= part_size:
            data = reader.read()
            reader.check(artifact.sha256, where)
            _put(s3, bucket, key, data, "application/octet-stream", meta)
            return
        _abort_unfinished(s3, bucket, key)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta,
                                               ContentType="application/octet-stream")["UploadId"]
        try:
            parts, digests = [], []
            for number, chunk in enumerate(reader.chunks(part_size), start=1):
                digest = hashlib.md5(chunk).digest()
                r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
                                   ContentMD5=_md5_header(digest))
                _expect_etag(r["ETag"], digest.hex(), f"{key} part {number}")
                parts.append({"PartNumber": number, "ETag": r["ETag"]})
                digests.append(digest)
            reader.check(artifact.sha256, where)
            r = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
        except BaseException:
            # Never a half object: the parts go with the upload.
            with contextlib.suppress(Exception):  # the first error is the one to report
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        # S3's ETag of a multipart object: md5 of the parts' md5s, "-", their count.
        try:
            _expect_etag(r["ETag"], f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(parts)}", key)
        except PublishFailed:
            s3.delete_object(Bucket=bucket, Key=key)  # never a wrong object under the image's name
            raise


def publish(artifact: Artifact, target: targets.S3, opts: Options) -> Published:
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3_client(opts.s3_endpoint_url)
    names = artifact.object_names(target.prefix)
    bucket = target.place
    try:
        uploaded = not _already_there(s3, bucket, names["image"], artifact)
        if uploaded:
            _upload_image(s3, bucket, names["image"], artifact, opts.part_size)
        meta = artifact.metadata()
        _put(s3, bucket, names["checksum"], artifact.checksum_path.read_bytes(), "text/plain", meta)
        _put(s3, bucket, names["manifest"], artifact.manifest_path.read_bytes(), "application/json", meta)
        for name, path in artifact.supply_chain(target.prefix).items():
            _put(s3, bucket, name, path.read_bytes(), "application/json", meta)
        # The pointer last: it never names an image that is not all there.
        pointer = artifact.latest_pointer({k: f"s3://{bucket}/{names[k]}" for k in ("image", "checksum", "manifest")})
        _put(s3, bucket, names["latest"], pointer, "application/json", meta)
    except (BotoCoreError, ClientError) as e:
        raise failure(str(target), e, f"check that bucket '{bucket}' exists, the credentials may write to it, "
                                      "and the endpoint (--s3-endpoint-url) is right") from e
    return Published(target=str(target), location=f"s3://{bucket}/{names['image']}", uploaded=uploaded,
                     latest=f"s3://{bucket}/{names['latest']}")
