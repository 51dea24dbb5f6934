"""tether.testing through pytest: the issue's scenario (a day's sleep, a token, 100 children),
advance with schedules and retries, triggered, hold / release, sync tasks."""

from __future__ import annotations

import pytest
from kit_support import kit

pytest_plugins = ["pytester"]

SCENARIO = '''
@app.task
async def square(n: int, ctx: Context) -> int:
    return n * n


@app.task
async def onboard(payload: dict, ctx: Context) -> dict:
    user = await ctx.step("create-user", lambda: {"id": payload["email"]})
    await ctx.sleep("1d")
    token = await ctx.create_token(timeout="7d")
    ctx.metadata["token"] = token.id
    answer = await ctx.wait_for_token(token)
    results = await ctx.batch_trigger_and_wait(square, list(range(100)))
    return {"user": user["id"], "answer": answer, "sum": sum(r.output for r in results)}


@app.task
def onboard_sync(payload: dict, ctx: SyncContext) -> dict:
    user = ctx.step("create-user", lambda: {"id": payload["email"]})
    ctx.sleep("1d")
    token = ctx.create_token()
    answer = ctx.wait_for_token(token)
    results = ctx.batch_trigger_and_wait(square, list(range(100)))
    return {"user": user["id"], "answer": answer, "sum": sum(r.output for r in results)}
'''


def test_a_day_a_token_and_a_hundred_children(pytester: pytest.Pytester) -> None:
    result = kit(pytester, SCENARIO, '''
        import pytest
        from tether import RunStatus
        from tasks import onboard, onboard_sync, square


        @pytest.mark.parametrize("task", [onboard, onboard_sync])
        def test_scenario(tether_env, task):
            run = tether_env.run(task, {"email": "ada@example.com"})
            assert run.status == RunStatus.WAITING  # asleep for a day

            tether_env.advance("23h")
            assert tether_env.retrieve(run).status == RunStatus.WAITING
            with pytest.raises(Exception, match="waits for no token"):
                tether_env.token_for(run)
            tether_env.advance("1h")  # the day is over: it now waits for the token
            token = tether_env.token_for(run)

            tether_env.complete_token(token, {"approved": True})
            done = tether_env.retrieve(run)
            assert done.status == RunStatus.COMPLETED, done.error
            assert done.output == {"user": "ada@example.com", "answer": {"approved": True},
                                   "sum": sum(n * n for n in range(100))}
            children = tether_env.triggered(square)
            assert [c.payload for c in children] == list(range(100))
            assert {c.parent_id for c in children} == {run.id}
            assert all(c.status == RunStatus.COMPLETED for c in children)
            assert tether_env.steps(run)["create-user"]["result"] == {"id": "ada@example.com"}
    ''')
    result.assert_outcomes(passed=2)


def test_the_app_is_its_own_again_after_the_env(pytester: pytest.Pytester) -> None:
    result = kit(pytester, SCENARIO, '''
        from tasks import PROD, app, square


        def test_first(tether_env):
            assert tether_env.app is app
            assert app.database_url.endswith("tether.db") and str(PROD) not in app.database_url
            assert tether_env.run(square, 3).output == 9
            assert len(tether_env.triggered(square)) == 1


        def test_second_starts_empty(tether_env):
            assert tether_env.triggered(square) == []


        def test_after(tmp_path):
            assert app.database_url == f"sqlite:///{PROD}"
    ''')
    result.assert_outcomes(passed=3)


def test_advance_fires_each_due_schedule_slot_and_retries(pytester: pytest.Pytester) -> None:
    result = kit(pytester, '''
        @app.task(cron="0 * * * *")
        async def hourly(payload: dict, ctx: Context) -> str:
            return payload["timestamp"]


        @app.task(retry=Retry(max_attempts=4, min_delay=60, factor=2, jitter=False))
        async def flaky(payload: None, ctx: Context) -> str:
            if ctx.attempt < 3:
                raise RuntimeError(f"down (attempt {ctx.attempt})")
            return f"up at attempt {ctx.attempt}"
    ''', '''
        from datetime import UTC, datetime, timedelta
        from tether import RunStatus
        from tasks import flaky, hourly


        def test_schedules(tether_env):
            assert tether_env.now == datetime(2026, 1, 1, tzinfo=UTC)
            assert tether_env.triggered(hourly) == []
            tether_env.advance("3h30m")
            runs = tether_env.triggered(hourly)
            assert [r.output for r in runs] == [f"2026-01-01T0{h}:00:00+00:00" for h in (1, 2, 3)]
            assert tether_env.now == datetime(2026, 1, 1, 3, 30, tzinfo=UTC)


        def test_retries_after_their_backoff(tether_env):
            run = tether_env.run(flaky)
            assert run.status == RunStatus.QUEUED and run.attempts == 1  # queued for later
            tether_env.advance(59)
            assert tether_env.retrieve(run).attempts == 1
            tether_env.advance(timedelta(minutes=5))  # 60 s, then 120 s later the third
            done = tether_env.retrieve(run)
            assert done.status == RunStatus.COMPLETED and done.output == "up at attempt 3"
    ''')
    result.assert_outcomes(passed=2)


def test_triggered_hold_and_release(pytester: pytest.Pytester) -> None:
    result = kit(pytester, '''
        SENT = []


        @app.task
        async def send_email(payload: dict, ctx: Context) -> None:
            SENT.append(payload["to"])


        @app.task
        async def signup(payload: dict, ctx: Context) -> str:
            await ctx.trigger(send_email, {"to": payload["email"], "template": "welcome"})
            return "ok"
    ''', '''
        from tether import RunStatus
        from tasks import SENT, send_email, signup


        def test_held_runs_wait_until_released(tether_env):
            tether_env.hold(send_email)
            run = tether_env.run(signup, {"email": "bo@example.com"})
            assert run.status == RunStatus.COMPLETED
            [email] = tether_env.triggered(send_email)
            assert email.payload == {"to": "bo@example.com", "template": "welcome"}
            assert email.status == RunStatus.QUEUED and email.parent_id == run.id
            assert SENT == []
            assert tether_env.release("send-email") == 1
            assert SENT == ["bo@example.com"]
            assert tether_env.retrieve(email).status == RunStatus.COMPLETED


        def test_drain_runs_what_the_app_triggered(tether_env):
            handle = send_email.trigger({"to": "cy@example.com"})  # the app is the env's
            assert tether_env.drain() == 1
            assert tether_env.retrieve(handle.id).status == RunStatus.COMPLETED
            assert tether_env.drain() == 0
    ''')
    result.assert_outcomes(passed=2)


def test_tether_start_sets_the_clock(pytester: pytest.Pytester) -> None:
    result = kit(pytester, '''
        @app.task
        async def stamp(payload: None, ctx: Context) -> None:
            pass
    ''', '''
        from datetime import UTC, datetime

        import pytest
        from tasks import stamp


        @pytest.fixture
        def tether_start():
            return datetime(2030, 6, 1, 12, tzinfo=UTC)


        def test_started_then(tether_env):
            assert tether_env.now == datetime(2030, 6, 1, 12, tzinfo=UTC)
            run = tether_env.run(stamp)
            assert run.created_at == datetime(2030, 6, 1, 12, tzinfo=UTC)
    ''')
    result.assert_outcomes(passed=1)


def test_env_in_a_running_event_loop(pytester: pytest.Pytester) -> None:
    result = kit(pytester, '''
        @app.task
        async def double(n: int, ctx: Context) -> int:
            return await ctx.step("double", lambda: n * 2)
    ''', '''
        import asyncio
        from tasks import double


        def test_from_a_coroutine(tether_env):
            async def main():
                return tether_env.run(double, 21).output

            assert asyncio.run(main()) == 42
    ''')
    result.assert_outcomes(passed=1)


def test_token_timeouts_large_values_and_the_readme_example(pytester: pytest.Pytester) -> None:
    result = kit(pytester, '''
        from tether import WaitTimeout

        CALLS = []


        @app.task
        async def approval(payload: None, ctx: Context) -> str:
            token = await ctx.create_token(timeout="1h")
            try:
                return await ctx.wait_for_token(token)
            except WaitTimeout:
                return "nobody answered"


        @app.task
        async def big(payload: None, ctx: Context) -> int:
            blob = await ctx.step("blob", lambda: "x" * 2_000_000)  # over offload_threshold
            return len(blob)


        @app.task  # the default Retry(): 3 attempts
        async def checkout(order: dict, ctx: Context) -> str:
            await ctx.step("reserve", CALLS.append, "reserve")
            await ctx.step("charge", CALLS.append, "charge")
            return "done"
    ''', '''
        from tether import RunStatus
        from tasks import CALLS, approval, big, checkout


        def test_a_token_that_times_out(tether_env):
            run = tether_env.run(approval)
            tether_env.advance("59m")
            assert tether_env.retrieve(run).status == RunStatus.WAITING
            tether_env.advance("1m")
            assert tether_env.retrieve(run).output == "nobody answered"


        def test_large_values_go_to_the_envs_object_store(tether_env):
            assert tether_env.run(big).output == 2_000_000
            objects = tether_env.app.objects.store.location
            assert "tether" in objects and "prod" not in objects


        def test_a_crash_while_charging(tether_env):  # README.md
            tether_env.fail_step("reserve", times=1)
            tether_env.crash_at("charge")
            run = tether_env.run(checkout, {"order": 7})
            tether_env.advance("5m")
            done = tether_env.retrieve(run)
            assert done.status == RunStatus.COMPLETED and done.attempts == 3
            assert CALLS == ["reserve", "charge"]
    ''')
    result.assert_outcomes(passed=3)
