"""`ctx.patched` with real worker processes: a run that passed the patch point on version 1
keeps the old branch when version 2 resumes it; a new run takes the new branch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import WorkerProcess, Workers, read_lines, wait_for_status

from tether import RunStatus, Tether

pytestmark = pytest.mark.slow

PATCHED = '''    if ctx.patched("rounding"):
        branch = await ctx.step("charge-rounded", _record, "charge-new")
    else:
        branch = await ctx.step("charge", _record, "charge-old")'''


def test_a_run_that_passed_the_patch_point_keeps_the_old_branch(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess], workers: Workers,
    client: Tether, tmp_path: Path,
) -> None:
    v1 = app_file("patch_v1.py")
    lines = v1.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "PATCH POINT" in line)
    v2 = tmp_path / "patch_v2.py"
    v2.write_text("\n".join([*lines[:at], PATCHED, *lines[at + 1:]]) + "\n")
    log = tmp_path / "patch.log"

    old = start_worker(v1, "--version", "v1")
    first = client.trigger("charge", {"sleep": 2.0})
    wait_for_status(client, first.id, RunStatus.WAITING, context=workers.describe)
    old.kill()
    start_worker(v2, "--version", "v2")
    done = wait_for_status(client, first.id, RunStatus.COMPLETED, timeout=30,
                           context=workers.describe)
    assert done.output == "charge-old" and done.version == "v1"
    second = client.trigger("charge", {"sleep": 0.1})
    new = wait_for_status(client, second.id, RunStatus.COMPLETED, timeout=30,
                          context=workers.describe)
    assert new.output == "charge-new"
    # each step function ran once per run: the old run's charge was never called again
    assert sorted(read_lines(log)) == sorted(["load", "charge-old", "receipt",
                                              "load", "charge-new", "receipt"])
