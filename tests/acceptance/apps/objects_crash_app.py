"""A task whose step result goes to the object store, with a store that can stop between an
object and the row naming it: with CRASH_MARKER set, the first object written makes the file
CRASH_MARKER and the process sleeps, so the test kills it there (the object written, its row
not). OBJECT_DIR is the store's directory; the test process opens the same one."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tether import Context, Tether
from tether.objects.stores import FileStore

BIG = 2 * 1024 * 1024


class PausingStore(FileStore):
    def put(self, key: str, data: bytes) -> None:
        super().put(key, data)
        marker = os.environ.get("CRASH_MARKER")
        if marker and not Path(marker).exists():
            Path(marker).write_text(key)
            time.sleep(60)  # killed here


app = Tether(lease_seconds=2, object_store=PausingStore(Path(os.environ["OBJECT_DIR"])))


@app.task
async def big(payload: str, ctx: Context) -> int:
    value = await ctx.step("make", lambda: payload * (BIG // max(1, len(payload))))
    return len(value)
