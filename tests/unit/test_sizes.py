"""`--max-request-size` / TETHER_MAX_REQUEST_SIZE: sizes in bytes, KB, MB or GB (powers of 1024),
and the server's config refuses a limit that is no number of bytes."""

from __future__ import annotations

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
    assert ServerConfig().max_request_size == 32 * 1024**2
