"""Requests written on a socket byte by byte: for what the server answers before the body it was
promised arrives (a Content-Length larger than what is sent, a chunked body still streaming)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    seconds: float  # from sending the request to the end of the answer's headers

    def json(self) -> Any:
        return json.loads(self.body)


def raw_head(url: str, method: str, target: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of a request to the server at `url`."""
    parts = urlsplit(url)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connect(url: str, timeout: float = 3.0) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_answer(sock: socket.socket, started: float) -> RawAnswer:
    """The answer on `sock`: status, headers and a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no answer within {sock.gettimeout()} s (is the server waiting "
                                 f"for the body?); got {data!r}") from None
        if not chunk:
            raise AssertionError(f"the server closed the connection without an answer: {data!r}")
        data += chunk
    seconds = time.perf_counter() - started
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawAnswer(int(status_line.split()[1]), headers, body[:length], seconds)


def raw_request(url: str, method: str, target: str, headers: dict[str, str], body: bytes = b"",
                timeout: float = 3.0) -> RawAnswer:
    """Send the request line, `headers` and `body` (which may be less than the Content-Length
    promises) and read the answer, failing if none comes within `timeout` seconds."""
    with connect(url, timeout) as sock:
        started = time.perf_counter()
        sock.sendall(raw_head(url, method, target, headers) + body)
        return read_answer(sock, started)
