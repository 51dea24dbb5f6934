"""The HTTP server: the JSON API (Trigger.dev-compatible routes, `server/api/`) and the dashboard
(`server/dashboard/`), one ASGI app built by `create_app`. Handlers call the same service layer as
the CLI (`app.runs`, `app.tokens`, `app.schedules`, `app.keys`, triggering)."""

from tether.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
