"""The factory's one way to a boto3 S3 client (publish and the layer cache):
the standard AWS configuration, an optional endpoint for Swift's S3 API, Ceph
or MinIO, and the secret kept out of every log line."""

from __future__ import annotations

from factory import log
from factory.errors import FactoryError


def s3_client(endpoint_url: str | None, attempts: int = 3):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    creds = session.get_credentials()
    if creds is None:
        raise FactoryError("no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                           "or AWS_PROFILE with a profile in ~/.aws/credentials")
    frozen = creds.get_frozen_credentials()
    log.hide(frozen.secret_key, frozen.token)
    # Path-style works on every S3 server; the default CRC checksums of
    # boto3 >= 1.36 do not (Swift's s3api, older Ceph): callers check their
    # bodies themselves (Content-MD5, or the sha256 a blob is named by).
    config = Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                    response_checksum_validation="when_required", retries={"max_attempts": attempts, "mode": "standard"},
                    connect_timeout=10, read_timeout=120)
    return session.client("s3", endpoint_url=endpoint_url, config=config)
