"""How much JSON Tether stores: the size limits (configurable) and the depth limit (fixed).

`max_payload_size` bounds what callers hand in: payloads, token completion data, metadata.
`max_output_size` bounds what tasks produce: return values, step results, checkpoints. Both
default to 10 MB and take bytes (an int, or text such as "10MB", "512KB", "1MiB"). KB, MB and GB
are decimal (1 MB = 1,000,000 bytes); KiB, MiB and GiB binary (1 MiB = 1,048,576 bytes). A value
given to `Tether(...)` wins over the environment (TETHER_MAX_PAYLOAD_SIZE,
TETHER_MAX_OUTPUT_SIZE), which wins over the default.

MAX_JSON_DEPTH is not a setting: it is what every reader of stored JSON handles with room to
spare. The tightest is the HTTP API: Pydantic's serializer gives up at 255 nested levels (the run
object wraps the payload in one more; related runs wrap metadata in four), the JSON parser of
Pydantic (jiter) at 200; Python's json module, the dashboard's templates and the CLI reach about
990 (the interpreter's recursion limit), JavaScript's JSON.parse thousands. 100 leaves room for the
levels Tether itself wraps around a value (a batch wait stores each child's output 3 deep), and is
the default of other JSON libraries too (Ruby's max_nesting, protobuf's recursion limit).
"""

from __future__ import annotations

import os
import re

from tether.errors import ConfigurationError

MAX_JSON_DEPTH = 100  # nested arrays and objects: [[1]] is 2 deep
DEFAULT_MAX_SIZE = 10_000_000  # 10 MB, for payloads and outputs alike

PAYLOAD_ENV = "TETHER_MAX_PAYLOAD_SIZE"
OUTPUT_ENV = "TETHER_MAX_OUTPUT_SIZE"

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(value: int | str, name: str) -> int:
    """Bytes from an int or a text such as "10MB", "512KB", "1.5MiB"; ConfigurationError naming
    `name` for anything else (or a size under one byte)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(f"{name} must be bytes (an int) or a text such as '10MB', "
                                 f"got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ConfigurationError(
                f"{name}: cannot read {value!r} as a size; use bytes or a number with KB, MB, GB "
                "(1000s) or KiB, MiB, GiB (1024s), such as '10MB'")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise ConfigurationError(f"{name} must be at least 1 byte, got {value!r}")
    return size


def size_setting(given: int | str | None, name: str, env: str) -> int:
    """The size `given` to the app, else the environment variable `env`, else 10 MB."""
    if given is not None:
        return parse_size(given, name)
    from_env = os.environ.get(env, "").strip()
    return parse_size(from_env, env) if from_env else DEFAULT_MAX_SIZE
