"""What `import tether` and the CLI load at start: a worker process, and every `tether` command,
starts without the HTTP server's stack (FastAPI, Starlette, uvicorn, Jinja2) or the HTTP
client's (httpx), which only `tether serve`/`dev` and `tether.Client` need. The server's
imports were half of a worker's start-up time."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["fastapi", "starlette", "uvicorn", "jinja2", "httpx", "tether.server"]


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    return [name for name in HEAVY if name in loaded]


def test_the_cli_and_the_library_start_without_the_server_or_client_stacks() -> None:
    assert _loaded_after("import tether") == []
    assert _loaded_after("import tether.cli.main") == []


def test_the_client_and_the_server_still_load_what_they_need() -> None:
    """The probe itself can see them: a client built, and the server's app, load their stacks."""
    loaded = _loaded_after("import tether\n"
                           "tether.Client('http://127.0.0.1:9', 'k').close()")
    assert "httpx" in loaded
    assert "fastapi" in _loaded_after("import tether.server.app")
