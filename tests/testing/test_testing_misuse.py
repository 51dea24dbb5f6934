"""tether.testing's errors for misuse, the plugin's cost for sessions that do not use it, its
registration, and Tether.bound_to."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from kit_support import CONFTEST, TASKS_HEADER, kit

from tether import Context, ManualClock, Tether
from tether.errors import ConfigurationError

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

TASKS = '''
@app.task
async def greet(name: str, ctx: Context) -> str:
    return await ctx.step("greet", lambda: f"hello {name}")


def not_a_task(payload: Any) -> None:
    pass


ENV: list[Any] = []  # a test puts its env here for the task below


@app.task(retry=Retry(max_attempts=1))
def reentrant(payload: None, ctx: SyncContext) -> None:
    ENV[0].drain()
'''


def test_clear_errors_for_misuse(pytester: pytest.Pytester) -> None:
    result = kit(pytester, TASKS, '''
        import pytest
        from tether import Tether
        from tether.testing import TestingError, TetherEnv
        from tasks import app, greet, not_a_task


        def test_unknown_task_id(tether_env):
            with pytest.raises(TestingError, match="unknown task 'nope'; the app's tasks: greet, "):
                tether_env.run("nope")


        def test_a_plain_function(tether_env):
            with pytest.raises(TestingError, match="'not_a_task' not registered with @app.task"):
                tether_env.run(not_a_task)


        def test_a_task_of_another_app(tether_env):
            other = Tether("sqlite:///unused.db")

            @other.task(id="greet")
            async def greet_too(name, ctx):
                return name

            with pytest.raises(TestingError, match="belongs to another app"):
                tether_env.run(greet_too, "x")


        def test_bad_arguments(tether_env):
            with pytest.raises(TestingError, match="times must be a whole number from 1"):
                tether_env.fail_step("greet", times=0)
            with pytest.raises(TestingError, match="needs a step name"):
                tether_env.crash_at("")
            with pytest.raises(TestingError, match="when must be 'before' or 'after'"):
                tether_env.crash_at("greet", when="during")
            with pytest.raises(TestingError, match="error must be an exception"):
                tether_env.fail_step("greet", error="boom")
            with pytest.raises(TestingError, match="unknown task 'gret'"):
                tether_env.fail_step("greet", task="gret")
            with pytest.raises(TestingError, match="advance must not be negative"):
                tether_env.advance(-1)
            with pytest.raises(TestingError, match="advance must be seconds"):
                tether_env.advance("soon")


        def test_a_run_that_waits_for_no_token(tether_env):
            run = tether_env.run(greet, "ada")
            with pytest.raises(TestingError, match="waits for no token .status COMPLETED"):
                tether_env.token_for(run)


        def test_one_env_at_a_time(tether_env, tmp_path):
            with pytest.raises(Exception, match="bound to another database already"):
                TetherEnv(app, tmp_path)


        def test_the_env_from_a_tasks_code(tether_env):
            from tasks import ENV, reentrant

            ENV.append(tether_env)
            run = tether_env.run(reentrant)
            assert run.status == "FAILED"
            assert "call run, advance, complete_token and drain from the test" in run.error["message"]


        def test_misspelt_step(tether_env):
            tether_env.fail_step("greeet")
            assert tether_env.run(greet, "ada").output == "hello ada"
    ''')
    result.assert_outcomes(passed=8, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_misspelt_step*",
        "*fail_step('greeet', times=1) matched no step that executed; the steps that did: greet",
    ])


def test_unused_faults_are_not_reported_after_a_failed_test(pytester: pytest.Pytester) -> None:
    result = kit(pytester, TASKS, '''
        def test_fails(tether_env):
            tether_env.crash_at("never")
            assert False, "the test's own failure"
    ''')
    result.assert_outcomes(failed=1)
    assert "matched no step" not in result.stdout.str()


def test_without_a_tether_app_fixture(pytester: pytest.Pytester) -> None:
    result = kit(pytester, TASKS, '''
        def test_needs_the_app(tether_env):
            pass
    ''', conftest="")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a `tether_app` fixture in conftest.py*"])


def test_the_plugin_imports_nothing_of_tether() -> None:
    code = ("import sys, tether_pytest; "
            "assert not [m for m in sys.modules if m == 'tether' or m.startswith('tether.')]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT / "src")}, timeout=60)


def test_the_kit_does_not_need_pytest() -> None:
    code = ("import sys, tether.testing; "
            "assert 'pytest' not in sys.modules and '_pytest' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT / "src")}, timeout=60)


def test_the_package_registers_the_plugin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"tether": "tether_pytest"}
    assert "src/tether_pytest" in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert not any(d.startswith("pytest") for d in project["project"]["dependencies"])


def test_the_entry_point_loads_the_plugin(pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution declaring pyproject's pytest11 entry points, on the path of a pytest
    started without -p: its fixtures are there (as once the package is installed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    points = project["project"]["entry-points"]["pytest11"]
    site = pytester.mkdir("site")
    info = site / "tether_entry_check-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tether-entry-check\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()))
    pytester.makepyfile(tasks=TASKS_HEADER + TASKS)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user='''
        from tasks import greet

        def test_it(tether_env):
            assert tether_env.run(greet, "ada").output == "hello ada"
    ''')
    monkeypatch.setenv("PYTHONPATH", f"{site}:{ROOT / 'src'}:{pytester.path}")
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)


def test_bound_to_gives_the_app_back(tmp_path: Path) -> None:
    own = tmp_path / "own.db"
    app = Tether(f"sqlite:///{own}")

    @app.task
    async def echo(value: int, ctx: Context) -> int:
        return value

    run_id = echo.trigger(1).id  # opens the app's own storage
    own_storage, own_clock = app.storage, app.clock
    clock = ManualClock(5_000.0)
    with app.bound_to(f"sqlite:///{tmp_path / 'other.db'}", clock=clock, inline_sleep=0) as bound:
        assert bound is app and app.clock is clock and app.inline_sleep == 0
        assert app.storage is not own_storage
        assert app.runs.list() == []
        other = echo.trigger(2)
        assert app.runs.retrieve(other.id).created_at.timestamp() == 5_000.0
        with pytest.raises(ConfigurationError, match="bound to another database already"), \
                app.bound_to(f"sqlite:///{tmp_path / 'third.db'}"):
            pass
    assert app.storage is own_storage and app.clock is own_clock and app.inline_sleep == 1.0
    assert [r.id for r in app.runs.list()] == [run_id]
    app.close()
