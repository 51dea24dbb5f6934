"""`tether tokens` for a token whose run was canceled while it waited for it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from acceptance_support import assert_clean_error, bus_folder, make_env, run_cli

from tether import Context, Tether, Worker


def test_completing_the_token_of_a_canceled_run_says_nothing_waits(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    env = make_env(db)
    app = Tether(f"sqlite:///{db}")

    @app.task
    async def approve(payload: None, ctx: Context) -> Any:
        return await ctx.wait_for_token(await ctx.create_token(timeout="1h"))

    try:
        handle = approve.trigger()
        asyncio.run(Worker(app).run_until_idle())
        [token] = app.tokens.list(status="WAITING")
        app.runs.cancel(handle.id)
        listed = run_cli("tokens", "list", "--status", "WAITING", env=env, cwd=tmp_path)
        assert listed.returncode == 0, listed
        assert "its run ended CANCELED; nothing waits for it" in listed.stdout, listed
        assert_clean_error(run_cli("tokens", "complete", token.id, '{"ok": 1}', env=env,
                                   cwd=tmp_path),
                           f"token {token.id} was not completed", "ended CANCELED")
        assert app.tokens.retrieve(token.id).output is None
    finally:
        app.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)
