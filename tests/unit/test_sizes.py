"""`--max-request-size` / TETHER_MAX_REQUEST_SIZE: sizes in bytes, KB, MB or GB (powers of 1024),
and the server's config refuses a limit that is no number of bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.cli.server import parse_size
from tether.errors import ConfigurationError
from tether.server import ServerConfig


@pytest.mark.parametrize(("text", "size"), [
    ("32MB", 32 * 1024**2), ("32mb", 32 * 1024**2), ("32MiB", 32 * 1024**2), ("512KB", 512 * 1024),
    ("1048576", 1048576), (" 1.5 GB ", 3 * 1024**3 // 2), ("7b", 7), ("2k", 2048),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "32XB", "0", "0.1", "-1MB", "1e6", "MB"])
def test_what_is_no_size(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "32MB"])
def test_the_config_wants_a_number_of_bytes(size: object) -> None:
    with pytest.raises(ConfigurationError, match="max_request_size"):
        ServerConfig(max_request_size=size)  # type: ignore[arg-type]
    assert ServerConfig().max_request_size is None  # then: from the app (request_limit)


def test_the_request_limit_follows_the_payload_limit_unless_given(tmp_path: Path) -> None:
    from tether import Tether
    from tether.server.app import ServerConfig, request_limit

    default = Tether(f"sqlite:///{tmp_path / 'a.db'}")
    assert request_limit(default, ServerConfig()) == 32 * 1024 * 1024  # 10 MB payloads
    larger = Tether(f"sqlite:///{tmp_path / 'b.db'}", max_payload_size="40MB")
    assert request_limit(larger, ServerConfig()) == 2 * 40_000_000 + 1024 * 1024
    assert request_limit(larger, ServerConfig(max_request_size=1024)) == 1024  # as given
