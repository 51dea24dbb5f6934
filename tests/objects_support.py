"""Object stores for tests: a directory, or a bucket on a real S3-compatible server (moto in
server mode, bound to 127.0.0.1) started for the test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STORES = ["file", "s3"]

_moto: tuple[object, str] | None = None


def moto_endpoint() -> str:
    """The endpoint of a moto server for this process (started once, a daemon thread)."""
    global _moto
    if _moto is None:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        _moto = (server, f"http://{host}:{port}")
    return _moto[1]


@contextmanager
def store_url(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of a fresh, empty store of `kind`."""
    if kind == "file":
        yield (tmp_path / "objects").as_uri()
        return
    import boto3

    endpoint = moto_endpoint()
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/tether"


def dead_store_url(tmp_path: Path) -> str:
    """A store that cannot be written: a directory under a file."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    return (blocker / "objects").as_uri()


def environ_has_s3() -> bool:
    return bool(os.environ.get("AWS_ENDPOINT_URL"))
