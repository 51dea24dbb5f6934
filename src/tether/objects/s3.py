"""Objects in an S3-compatible bucket through boto3 (the `s3` extra). The client reads its
endpoint, region and credentials from the usual AWS settings (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, ~/.aws/config)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from tether.errors import ConfigurationError, ObjectStoreUnavailable


class S3Store:
    def __init__(self, bucket: str, prefix: str) -> None:
        if not bucket:
            raise ConfigurationError("no bucket in object store URL: use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.location = f"s3://{bucket}/{prefix}".rstrip("/")
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        import boto3
                        from botocore.config import Config
                    except ImportError:
                        raise ConfigurationError(
                            f"object store {self.location} needs boto3: pip install 'tether[s3]'"
                        ) from None
                    config = Config(retries={"max_attempts": 3, "mode": "standard"},
                                    connect_timeout=5, read_timeout=30)
                    self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _fail(self, doing: str, exc: Exception) -> ObjectStoreUnavailable:
        return ObjectStoreUnavailable(f"object store {self.location} cannot {doing}: {exc}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client().put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except ConfigurationError:
            raise
        except Exception as exc:  # botocore's errors share no base with the connection errors
            raise self._fail("be written", exc) from None

    def get(self, key: str) -> bytes:
        try:
            body = self.client().get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            return bytes(body.read())
        except ConfigurationError:
            raise
        except Exception as exc:
            raise self._fail(f"read {key}", exc) from None

    def delete(self, keys: Iterable[str]) -> None:
        batch = [k for k in keys]
        for start in range(0, len(batch), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": self.prefix + k} for k in batch[start:start + 1000]]
            try:
                self.client().delete_objects(Bucket=self.bucket,
                                             Delete={"Objects": chunk, "Quiet": True})
            except Exception as exc:
                raise self._fail("delete objects", exc) from None

    def keys(self, after: str = "") -> Iterator[str]:
        try:
            pages = self.client().get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, StartAfter=self.prefix + after)
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.prefix):]
        except Exception as exc:
            raise self._fail("list objects", exc) from None
