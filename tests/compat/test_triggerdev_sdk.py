"""The official Trigger.dev SDK (`@trigger.dev/sdk` 4.x from npm, the version pinned in
tests/compat/node/package-lock.json) triggers and manages Python tasks through a real `tether serve`,
with a real `tether worker` running tests/compat/app.py.

The SDK is installed once into .cache/node-sdk/ (reused until the lock file changes). To test a
newer SDK: `cd tests/compat/node && npm install --package-lock-only @trigger.dev/sdk@4`.
Without `node`/`npm` the test skips, except under CI=true, where it fails."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tether import RunStatus, Tether, TokenStatus

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
NODE_SOURCES = HERE / "node"
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache" / "node-sdk"
TETHER_EXE = Path(sys.executable).with_name("tether")
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 30.0
NODE_TIMEOUT = 120.0  # the script's own limit is 90 s


# -- Node and the SDK ------------------------------------------------------------------------------
def require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not found: the Trigger.dev SDK test needs Node.js 18+"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


def _run(command: list[str], cwd: Path, timeout: float) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def install_sdk() -> Path:
    """The cache folder with the SDK installed from the committed lock file and the script."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time across test processes
        sources = [NODE_SOURCES / "package.json", NODE_SOURCES / "package-lock.json"]
        stamp = hashlib.sha256(b"".join(p.read_bytes() for p in sources if p.exists())).hexdigest()
        installed = CACHE / ".installed"
        sdk = CACHE / "node_modules" / "@trigger.dev" / "sdk" / "package.json"
        if not sdk.exists() or not installed.exists() or installed.read_text() != stamp:
            for source in sources:
                if source.exists():
                    shutil.copy(source, CACHE / source.name)
            has_lock = (CACHE / "package-lock.json").exists()
            command = ["npm", "ci"] if has_lock else ["npm", "install", "@trigger.dev/sdk@4"]
            _run([*command, "--no-audit", "--no-fund"], CACHE, INSTALL_TIMEOUT)
            installed.write_text(stamp)
        shutil.copy(NODE_SOURCES / "compat.mjs", CACHE / "compat.mjs")
    return CACHE


# -- Tether processes ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A `tether ...` subprocess logging to a file; killed at the end whatever happened."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(TETHER_EXE), *args], env=env, cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"--- {self.name} ({state}):\n{self.log()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def wait_for(check: Any, what: str, processes: list[Process], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        dead = [p for p in processes if p.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(p.describe() for p in processes)
            pytest.fail(f"{what}: {'a process exited' if dead else f'not after {timeout}s'}\n{logs}")
        time.sleep(0.1)


def create_key(env: dict[str, str]) -> str:
    for args in (["db", "upgrade"], ["keys", "create", "--name", "compat", "--json"]):
        done = subprocess.run([str(TETHER_EXE), *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, f"tether {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return str(json.loads(done.stdout)["secret"])


def server_ready(url: str, key: str) -> bool:
    try:
        answer = httpx.get(f"{url}/api/v1/runs", headers={"Authorization": f"Bearer {key}"}, timeout=2)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


@pytest.fixture
def tether_stack(tmp_path: Path) -> Iterator[tuple[str, str, str, list[Process]]]:
    """(API url, API key, database url, the processes): `tether serve` and `tether worker`."""
    db_url = f"sqlite:///{(tmp_path / 'compat.db').resolve()}"
    env = {**os.environ, "TETHER_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"}
    env.pop("TRIGGER_API_URL", None)
    key = create_key(env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process("server", ["serve", "--port", str(port)], env, tmp_path)
    worker = Process("worker", ["worker", str(HERE / "app.py")], env, tmp_path)
    processes = [server, worker]
    try:
        wait_for(lambda: server_ready(url, key), "tether serve never answered", processes)
        wait_for(lambda: "serving" in worker.log(), "tether worker never started", processes)
        yield url, key, db_url, processes
    finally:
        for process in processes:
            process.stop()


def run_node(cache: Path, url: str, key: str, processes: list[Process]) -> dict[str, Any]:
    env = {**os.environ, "TRIGGER_API_URL": url, "TRIGGER_SECRET_KEY": key}
    env.pop("TRIGGER_ACCESS_TOKEN", None)
    try:
        done = subprocess.run(["node", str(cache / "compat.mjs")], cwd=cache, env=env,
                              capture_output=True, text=True, timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the Node script ran over {NODE_TIMEOUT}s: {exc.stdout!r} {exc.stderr!r}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("COMPAT_SUMMARY ")]
    context = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}\n" + "\n".join(
        p.describe() for p in processes)
    assert lines, f"the Node script printed no summary ({done.returncode})\n{context}"
    summary: dict[str, Any] = json.loads(lines[-1].removeprefix("COMPAT_SUMMARY "))
    assert done.returncode == 0 and "error" not in summary, \
        f"the SDK failed in step {summary.get('step')}: {summary.get('error')}\n{context}"
    return summary


# -- the test --------------------------------------------------------------------------------------
@pytest.fixture
def node_sdk() -> Path:
    require_node()
    return install_sdk()


def test_the_trigger_dev_sdk_drives_python_tasks(
        node_sdk: Path, tether_stack: tuple[str, str, str, list[Process]]) -> None:
    url, key, db_url, processes = tether_stack
    summary = run_node(node_sdk, url, key, processes)
    assert summary["sdkVersion"].startswith("4.")
    db = Tether(db_url)
    try:
        check_trigger(summary, db)
        check_batch(summary, db)
        check_list(summary)
        check_cancel_and_reschedule(summary, db)
        check_replay(summary, db)
        check_token(summary, db)
        check_payloads(summary, db)
        check_first_hour(summary, db)
        check_errors(summary, db)
    finally:
        db.close()


WHEN = "2024-05-01T12:00:00.000Z"


def check_trigger(summary: dict[str, Any], db: Tether) -> None:
    run_id = summary["trigger"]["id"]
    assert run_id.startswith("run_") and summary["trigger"]["againId"] == run_id  # idempotent
    assert summary["poll"]["status"] == "COMPLETED" and summary["poll"]["isSuccess"]
    payload = {"name": "node", "when": WHEN}
    seen = summary["retrieve"]
    assert seen["payload"] == payload and seen["taskIdentifier"] == "greet"
    assert seen["output"] == {"greeting": "hello node", "received": payload}
    assert seen["tags"] == ["compat", "sdk"] and seen["metadata"] == {"source": "node"}
    assert seen["isCompleted"] and seen["isSuccess"] and seen["datesParsed"]
    assert seen["attemptCount"] == 1 and seen["depth"] == 0 and seen["triggerFunction"] == "trigger"
    stored = db.runs.retrieve(run_id)
    assert stored.status == RunStatus.COMPLETED and stored.payload == payload
    assert stored.tags == ["compat", "sdk"] and stored.metadata == {"source": "node"}
    assert stored.idempotency_key is not None
    assert [r.id for r in db.runs.list(tag="sdk")] == [summary["replay"]["id"], run_id]


def check_batch(summary: dict[str, Any], db: Tether) -> None:
    info = summary["batch"]
    assert info["batchId"].startswith("batch_") and info["runCount"] == 3
    assert len(set(info["runs"])) == 3
    assert [r["output"]["greeting"] for r in info["results"]] == ["hello a", "hello b", "hello c"]
    stored = [db.runs.retrieve(run_id) for run_id in info["runs"]]
    assert [r.payload for r in stored] == [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert all(r.status == RunStatus.COMPLETED for r in stored)
    assert stored[1].tags == ["second"]


def check_list(summary: dict[str, Any]) -> None:
    listed = summary["list"]
    assert len(listed["firstPage"]) == 2 and listed["hasNextPage"]
    assert listed["env"]["name"]
    completed_greets = 1 + 3  # the first run and the batch's; the replay comes later
    assert len(listed["iterated"]) == completed_greets == len(set(listed["iterated"]))
    assert listed["firstPage"] == listed["iterated"][:2]  # newest first, same order
    assert listed["tagged"] == [summary["trigger"]["id"]]


def check_cancel_and_reschedule(summary: dict[str, Any], db: Tether) -> None:
    cancel = summary["cancel"]
    assert cancel["before"] == "WAITING" and cancel["answerId"] == cancel["id"]
    assert cancel["status"] == "CANCELED" and cancel["isCancelled"] and cancel["isCompleted"]
    assert db.runs.retrieve(cancel["id"]).status == RunStatus.CANCELED
    moved = summary["reschedule"]
    assert moved["status"] == "DELAYED"
    stored = db.runs.retrieve(moved["id"])
    assert stored.status == RunStatus.DELAYED and stored.available_at is not None
    assert stored.available_at.timestamp() > time.time() + 5400  # about 2 h away


def check_replay(summary: dict[str, Any], db: Tether) -> None:
    replay = summary["replay"]
    assert replay["id"] != replay["original"] and replay["status"] == "COMPLETED"
    original, copy = db.runs.retrieve(replay["original"]), db.runs.retrieve(replay["id"])
    assert copy.task_id == "greet" and copy.payload == original.payload
    assert copy.status == RunStatus.COMPLETED and copy.tags == original.tags


def check_token(summary: dict[str, Any], db: Tether) -> None:
    token = summary["token"]
    assert token["id"].startswith("waitpoint_") and token["isCached"] is False and token["hasUrl"]
    assert token["completed"] is True and token["status"] == "COMPLETED"
    decision = {"approved": True, "by": "node"}
    assert token["output"] == decision and token["id"] in token["listed"]
    assert token["run"]["status"] == "COMPLETED" and token["run"]["output"] == {"decision": decision}
    stored = db.tokens.retrieve(token["id"])
    assert stored.status == TokenStatus.COMPLETED and stored.output == decision
    assert db.runs.retrieve(token["runId"]).output == {"decision": decision}


def check_payloads(summary: dict[str, Any], db: Tether) -> None:
    """What the SDK triggers reads back equal through the SDK; what Tether could not read back
    (too deep, a lone surrogate) is a 400 at trigger time, with nothing stored."""
    seen = summary["payloads"]
    assert seen["status"] == "COMPLETED" and seen["payloadEqual"] and seen["outputEqual"], seen
    assert seen["tooDeep"]["status"] == 400 and "nested 101 levels deep" in seen["tooDeep"]["message"]
    assert seen["loneSurrogate"]["status"] == 400
    assert "lone surrogate" in seen["loneSurrogate"]["message"]
    names = [r.payload.get("name") for r in db.runs.list(task="greet", limit=100)]
    assert "deep" in names and "too deep" not in names and "lone \ud800" not in names


def check_first_hour(summary: dict[str, Any], db: Tether) -> None:
    """What issue 17 found the SDK tripping over against `tether serve`."""
    seen = summary["firstHour"]
    greets = [r.id for r in db.runs.list(task="greet", limit=100)]
    assert seen["byTaskQueue"] == greets and seen["byPlainName"] == greets  # task/greet, greet
    pages = seen["pages"]
    assert len(pages["first"]) == 2 and pages["back"] == pages["first"]
    assert pages["second"] == greets[2:4]
    tokens = seen["tokenPages"]
    assert tokens["first"] == tokens["made"][::-1][:2] and tokens["second"] == tokens["made"][:1]
    assert tokens["back"] == tokens["first"]
    ttl = seen["ttl"]
    assert ttl["again"] == ttl["first"] and ttl["againCached"] is True
    assert ttl["after"] != ttl["first"] and ttl["afterCached"] is False
    key = seen["failedKey"]
    assert key["status"] == "FAILED" and key["retried"] != key["first"]
    assert db.runs.retrieve(key["retried"]).idempotency_key == "fail-1"
    refused = seen["declaredDelete"]
    assert refused["status"] == 400 and "declared in code" in refused["message"]
    assert refused["ms"] < 3000  # answered at once: a 409 would be retried for about 9 s
    assert db.schedules.retrieve(refused["id"]).declared
    assert seen["firstZone"] == "UTC" and seen["zoneCount"] > 300


def check_errors(summary: dict[str, Any], db: Tether) -> None:
    errors = summary["errors"]
    assert errors["unknownTask"]["status"] == 404
    assert errors["missingRun"]["status"] == 404 and errors["missingRun"]["name"] == "NotFoundError"
    assert errors["wrongKey"]["status"] == 401
    assert errors["wrongKey"]["name"] == "AuthenticationError"
    assert db.runs.list(task="no-such-task") == []
