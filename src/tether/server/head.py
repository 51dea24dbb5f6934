"""`HEAD` answered as `GET`, without the body: the same status and headers (RFC 9110), so a
monitor's `HEAD /` or `curl -I` sees what a browser would. FastAPI's routes answer only the
methods they declare, which made every `HEAD` a 405.

A pure ASGI middleware inside the request guard, which treats `HEAD` as the read it is. The
route runs as for `GET`; its body is dropped and the answer ends with its first body message, so
a stream (the dashboard's live updates) ends too: the server then reports the client gone."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def without_body(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.body":
                if ended:
                    return
                ended = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
