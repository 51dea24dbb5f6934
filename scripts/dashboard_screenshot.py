"""Writes docs/dashboard-run.png: the dashboard's page of a run with several steps, a failed first
attempt, a durable sleep, a child run and a token wait, executed by a real worker on a
throwaway SQLite database and captured with Debian's Chromium.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/dashboard-run.png] [--light]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from tether import AbortRun, Context, Queue, Retry, Tether, Worker
from tether.server import ServerConfig, create_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


FAILURES = {"charge": 1}  # the first charge fails, so the run shows a failed attempt


async def load_orders(day: str) -> list[dict[str, Any]]:
    await asyncio.sleep(0.35)
    return [{"id": i, "amount": 20 + i} for i in range(42)]


async def charge(total: int) -> dict[str, Any]:
    await asyncio.sleep(0.25)
    if FAILURES["charge"]:
        FAILURES["charge"] -= 1
        raise ConnectionError("payments API: connection reset by peer")
    return {"charged": total, "receipt": "rcpt_7Q2"}


def demo_app(url: str) -> Tether:
    app = Tether(url, inline_sleep=0.1)

    @app.task(id="render-pdf", queue=Queue("documents", concurrency=4))
    async def render_pdf(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        await ctx.step("layout", asyncio.sleep, 0.3)
        await ctx.step("rasterize", asyncio.sleep, 0.35)
        return {"pages": 12, "url": f"s3://reports/{payload['day']}.pdf"}

    @app.task(id="monthly-report", queue=Queue("reports", concurrency=2),
              retry=Retry(max_attempts=3, min_delay=0.4, max_delay=0.4, jitter=False))
    async def monthly_report(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
        orders = await ctx.step("load-orders", load_orders, payload["day"])
        ctx.logger.info("loaded %d orders for %s", len(orders), payload["day"])
        total = await ctx.step("aggregate", lambda: sum(o["amount"] for o in orders))
        ctx.metadata["progress"] = 0.4
        receipt = await ctx.step("charge", charge, total)
        await ctx.sleep(1.2)
        pdf = await ctx.trigger_and_wait(render_pdf, {"day": payload["day"]})
        ctx.metadata["progress"] = 0.8
        token = await ctx.create_token(timeout="1h", tags=["approval"])
        ctx.logger.info("waiting for approval on token %s", token.id)
        decision = await ctx.wait_for_token(token)
        ctx.logger.warning("approved by %s", decision.get("by"))
        await ctx.step("publish", asyncio.sleep, 0.2)
        ctx.metadata["progress"] = 1.0
        return {"total": total, "receipt": receipt["receipt"], "pdf": pdf["url"], "approved": True}

    @app.task(id="sync-crm", retry=Retry(max_attempts=1))
    def sync_crm(payload: dict[str, Any], ctx: Any) -> None:
        ctx.step("fetch-contacts", time.sleep, 0.05)
        raise AbortRun(f"CRM rejected the update: account {payload['account']} is locked")

    return app


def extras(app: Tether) -> None:
    """Other runs, a schedule and a token, so that the other pages have something to show."""
    for account in (11, 12):
        app.trigger("sync-crm", {"account": account}, tags=[f"account:{account}"])
    app.trigger("render-pdf", {"day": "2024-06"}, delay="1h", tags=["customer:9"])
    app.schedules.create(task="monthly-report", cron="0 6 1 * *", timezone="Europe/Berlin")
    app.tokens.create(timeout="2h", tags=["manual-review"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_demo(app: Tether) -> str:
    """Execute one monthly-report run with a worker in a thread; returns its id."""
    worker = Worker(app, concurrency=4)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),), daemon=True)
    thread.start()
    try:
        extras(app)
        handle = app.trigger("monthly-report", {"day": "2024-05", "customer": 7},
                             tags=["customer:7", "monthly"])
        deadline = time.monotonic() + 30
        while not [t for t in app.tokens.list(status="WAITING") if t.run_id == handle.id]:
            if time.monotonic() > deadline:
                raise RuntimeError("the demo run never waited for its token")
            time.sleep(0.05)
        time.sleep(0.6)
        token = next(t for t in app.tokens.list(status="WAITING") if t.run_id == handle.id)
        app.tokens.complete(token.id, {"by": "ana@example.com"})
        handle.result(timeout=30)
        return handle.id
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(10)


def capture(base: str, run_id: str, out: Path, scheme: str, more: Path | None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1,
                                color_scheme=scheme)  # type: ignore[arg-type]
        page.goto(f"{base}/runs/{run_id}")
        page.wait_for_selector(".live.on")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        for name in ([] if more is None else ["", "failed", "tasks", "queues", "schedules", "tokens"]):
            page.goto(f"{base}/{name}")
            page.screenshot(path=str(more / f"dashboard-{name or 'runs'}.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard-run.png")
    parser.add_argument("--light", action="store_true", help="the light theme instead of the dark")
    parser.add_argument("--pages", type=Path, help="also capture the other pages into this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = demo_app(f"sqlite:///{tmp}/tether.db")
        app.storage.migrate()
        run_id = run_demo(app)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = uvicorn.Server(uvicorn.Config(create_app(app, ServerConfig(dev=True, public_url=base)),
                                               host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            capture(base, run_id, args.out, "light" if args.light else "dark", args.pages)
        finally:
            server.should_exit = True
            thread.join(10)
            app.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
