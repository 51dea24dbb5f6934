"""W7 the dashboard and the API over a big database: `--runs` (100,000) runs of 4 tasks with
mixed statuses and tags, then the server time (its Server-Timing header) of the runs list pages:
the dashboard's `/` with and without filters and the API's GET /api/v1/runs. Medians of
`--requests` requests each, over real HTTP to a uvicorn server in this process. Then the live
update: a run's page open on its event stream, the run is canceled through the API, and the time
until the page's stream delivers the change (median of `--requests`)."""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from common import add_database_args, backend, database, database_url, emit

TASKS = ["import-orders", "send-email", "sync-crm", "render-pdf"]
PAGES = {
    "dashboard": "/",
    "dashboard_status": "/?status=FAILED",
    "dashboard_task": "/?task=sync-crm",
    "dashboard_tag": "/?tag=customer:42",
    "api": "/api/v1/runs",
    "api_status": "/api/v1/runs?filter[status]=FAILED",
    "api_task_tag": "/api/v1/runs?filter[taskIdentifier]=sync-crm&filter[tag]=customer:42",
    "api_page_3": None,  # the third page, following the cursor
}


def fill(app: Any, runs: int) -> None:
    """Trigger `runs` runs in batches, then give them final statuses as a database in use has."""
    for start in range(0, runs, 1000):
        n = min(1000, runs - start)
        task = TASKS[(start // 1000) % len(TASKS)]
        app.batch_trigger(task, [{"i": start + i} for i in range(n)],
                          tags=[f"customer:{(start // 1000) % 50}"])
    storage = app.storage
    sql = ("UPDATE runs SET status = CASE WHEN id LIKE '%0' THEN 'FAILED' WHEN id LIKE '%1'"
           " THEN 'QUEUED' ELSE 'COMPLETED' END, attempts = 1, finished_at = created_at + 0.5,"
           " started_at = created_at + 0.1")
    if backend(storage.url) == "sqlite":
        with storage.db.write() as conn:
            conn.execute(sql)
            conn.execute("ANALYZE")
    else:
        storage._tx(lambda conn: conn.execute(sql))
        storage._tx(lambda conn: conn.execute("ANALYZE runs"))


def start_server(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    from tether.server import ServerConfig, create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(create_app(app, ServerConfig(dev=True, public_url=url)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return url, server, thread


def server_ms(response: httpx.Response) -> float:
    response.raise_for_status()
    return float(response.headers["server-timing"].split("dur=")[1])


def third_page(client: httpx.Client) -> float:
    cursor = None
    for _ in range(3):
        response = client.get("/api/v1/runs", params={"page[after]": cursor} if cursor else None)
        cursor = response.json()["pagination"].get("next")
    return server_ms(response)


def _next_swap(lines: Iterator[str]) -> None:
    """Read the event stream up to the end of its next `swap` event."""
    in_swap = False
    for line in lines:
        if line == "event: swap":
            in_swap = True
        elif in_swap and line == "":
            return
    raise SystemExit("the live stream ended without an event")


def live_latency_ms(client: httpx.Client, app: Any) -> float:
    run_id = app.trigger(TASKS[0], {"i": -1}, delay="1h").id
    with client.stream("GET", f"/live/runs/{run_id}") as stream:
        lines = stream.iter_lines()
        _next_swap(lines)  # the page as it is
        started = time.perf_counter()
        client.post(f"/api/v2/runs/{run_id}/cancel").raise_for_status()
        _next_swap(lines)
        return (time.perf_counter() - started) * 1000


def measure(client: httpx.Client, requests: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, path in PAGES.items():
        timings = [third_page(client) if path is None else server_ms(client.get(path))
                   for _ in range(requests)]
        out[f"{name}_ms"] = round(statistics.median(timings), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_database_args(parser)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    from tether import Tether

    with database(database_url(args)) as url:
        app = Tether(url)
        for task in TASKS:
            app.task(id=task)(lambda payload: payload)
        app.storage.migrate()
        app.storage.register_tasks([t.record(time.time()) for t in app.tasks.values()],
                                   [t.queue_record() for t in app.tasks.values()])
        started = time.perf_counter()
        fill(app, args.runs)
        fill_s = time.perf_counter() - started
        key = app.keys.create("bench").secret
        base, server, thread = start_server(app)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
                client.get("/")  # warm up templates and connections
                result = measure(client, args.requests)
                live = [live_latency_ms(client, app) for _ in range(args.requests)]
                result["live_update_ms"] = round(statistics.median(live), 1)
                result["live_update_max_ms"] = round(max(live), 1)
        finally:
            server.should_exit = True
            thread.join(10)
        emit({"workload": "W7", "backend": backend(url), "runs": args.runs,
              "fill_s": round(fill_s, 1), **result})
        app.close()


if __name__ == "__main__":
    main()
