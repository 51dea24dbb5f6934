"""The core without OpenTelemetry: a process where it cannot be imported triggers and runs a
task (the otel extra is optional), and a process that never imported it does not import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
{block}
from tether import Context, Tether, Worker

app = Tether(sys.argv[1])

@app.task(id="hello")
async def hello(payload, ctx: Context):
    return await ctx.step("greet", lambda: f"hello {{payload}}")

handle = hello.trigger("you")
assert asyncio.run(Worker(app).run_until_idle()) == 1
assert app.runs.retrieve(handle.id).output == "hello you"
assert app.storage.get_run(handle.id).trace_context is None
print("imported" if "opentelemetry.trace" in sys.modules else "not imported")
"""


def run(tmp_path: Path, block: str) -> str:
    url = f"sqlite:///{(tmp_path / 'tether.db').resolve()}"
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(block=block), url],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_runs_without_opentelemetry(tmp_path: Path) -> None:
    assert run(tmp_path, 'sys.modules["opentelemetry"] = None  # as if not installed') == (
        "not imported")


def test_the_core_does_not_import_it(tmp_path: Path) -> None:
    assert run(tmp_path, "") == "not imported"
