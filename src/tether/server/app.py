"""Build the ASGI app: routers, error handlers, and the Tether app they share."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from tether.app import Tether
from tether.server.errors import install_error_handlers
from tether.server.timing import ServerTiming


@dataclass(frozen=True)
class ServerConfig:
    """`dev`: the dashboard opens without a login for requests from 127.0.0.1 (`tether dev`).
    `public_url`: the address clients reach this server at, used in callback URLs."""

    dev: bool = False
    public_url: str = "http://127.0.0.1:8030"


def create_app(tether: Tether, config: ServerConfig | None = None) -> FastAPI:
    from tether.server.api import router as api_router
    from tether.server.dashboard import router as dashboard_router

    api = FastAPI(title="Tether", version="0.1.0",
                  description="Durable background tasks for Python. The routes under /api follow "
                              "Trigger.dev's management API.",
                  docs_url="/api/docs", redoc_url=None)
    api.state.tether = tether
    api.state.config = config or ServerConfig()
    install_error_handlers(api)
    api.add_middleware(ServerTiming)
    api.include_router(api_router)
    api.include_router(dashboard_router)
    return api
