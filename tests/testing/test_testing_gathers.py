"""tether.testing with several waits at once: a gather (async) and ctx.parallel (sync) of a
child, a sleep and two tokens move on with env.advance and env.complete_token, resume once, and
return their results in call order; tokens_for names the tokens still waited for."""

from __future__ import annotations

import pytest
from kit_support import kit

pytest_plugins = ["pytester"]

TASKS = '''
import asyncio


@app.task
async def child(seconds: int, ctx: Context) -> str:
    await ctx.sleep(seconds)
    return f"child slept {seconds}s"


@app.task
async def gathered(payload: None, ctx: Context) -> list:
    first, second = await ctx.create_token(), await ctx.create_token(timeout="1d")
    return list(await asyncio.gather(
        ctx.trigger_and_wait(child, 3600), ctx.sleep("2h"), ctx.wait_for_token(first),
        ctx.wait_for_token(second)))


@app.task
def in_parallel(payload: None, ctx: SyncContext) -> list:
    first, second = ctx.create_token(), ctx.create_token(timeout="1d")
    return ctx.parallel(lambda: ctx.trigger_and_wait(child, 3600), lambda: ctx.sleep("2h"),
                        lambda: ctx.wait_for_token(first), lambda: ctx.wait_for_token(second))
'''


def test_a_gather_with_advance_and_complete_token(pytester: pytest.Pytester) -> None:
    result = kit(pytester, TASKS, '''
        import pytest
        from tether import RunStatus
        from tether.testing import TestingError
        from tasks import gathered, in_parallel


        @pytest.mark.parametrize("task", [gathered, in_parallel])
        def test_gather(tether_env, task):
            run = tether_env.run(task)
            assert run.status == RunStatus.WAITING
            first, second = tether_env.tokens_for(run)
            with pytest.raises(TestingError, match="2 tokens at once"):
                tether_env.token_for(run)
            tether_env.complete_token(second, "b")
            assert tether_env.token_for(run) == first
            tether_env.advance("1h")  # the child is done; the sleep and a token are not
            assert tether_env.retrieve(run).status == RunStatus.WAITING
            tether_env.complete_token(first, "a")
            assert tether_env.retrieve(run).status == RunStatus.WAITING  # the sleep
            tether_env.advance("1h")
            done = tether_env.retrieve(run)
            assert done.status == RunStatus.COMPLETED, done.error
            assert done.output == ["child slept 3600s", None, "a", "b"]
            assert tether_env.tokens_for(run) == []
    ''')
    result.assert_outcomes(passed=2)
