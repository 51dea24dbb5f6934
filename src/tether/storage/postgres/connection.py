"""PostgreSQL connections: a psycopg pool, an optional schema, and retries across restarts.

A statement that fails because the server went away is retried on a fresh connection until
`reconnect_timeout` passes. That is safe for Tether's writes: each is idempotent or fenced by a
lease token, so a commit whose acknowledgement was lost is seen as already applied on retry.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether.errors import ConfigurationError, StorageUnavailable

try:
    import psycopg
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ConfigurationError(
        "PostgreSQL support needs psycopg: pip install 'tether[postgres]'") from exc

T = TypeVar("T")
log = logging.getLogger("tether.storage")

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
PROBE_TIMEOUT = 5  # seconds a first connection may take (libpq's connect_timeout; at least 2)


def split_url(url: str) -> tuple[str, str | None]:
    """The libpq URL without Tether's own `schema=` parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    if schema is not None and not _SCHEMA.match(schema):
        raise ConfigurationError(f"schema must be a lower-case identifier, got {schema!r}")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


class Connections:
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 16,
                 reconnect_timeout: float = 60.0) -> None:
        self.conninfo, self.schema = split_url(url)
        self.reconnect_timeout = reconnect_timeout
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row,
                                  "prepare_threshold": 0}
        if self.schema:
            kwargs["options"] = f"-c search_path={self.schema}"
        self.kwargs = kwargs
        self.pool = ConnectionPool(self.conninfo, kwargs=kwargs, min_size=min_size,
                                   max_size=max_size, open=False, name="tether")
        self._opened = False
        # the worker loop's own connection for its claims and endings (made on first use)
        self._generic: psycopg.Connection[Any] | None = None
        self._generic_lock = threading.Lock()

    @property
    def where(self) -> str:
        """host:port/database, without the user, password or parameters."""
        return self.conninfo.split("@")[-1].split("?")[0]

    def open(self) -> None:
        if self._opened:
            return
        self.probe()
        try:
            self.pool.open(wait=True, timeout=10)
        except Exception as exc:
            self.pool.close()
            raise StorageUnavailable(f"cannot connect to PostgreSQL at {self.where}: {exc}") from None
        self._opened = True
        if self.schema:
            # IF NOT EXISTS is not atomic: another process may create it at the same moment
            with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema):
                self.run(lambda c: c.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))

    def probe(self) -> None:
        """One direct connection before the pool opens: a server that is down, a database that
        does not exist or a login refused is reported at once, in the server's words. (The pool
        would retry for 10 s, log a warning per try and then say only that it timed out.)"""
        try:
            extra: dict[str, Any] = {} if "connect_timeout" in self.conninfo else {
                "connect_timeout": PROBE_TIMEOUT}
            psycopg.connect(self.conninfo, **extra).close()
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: {connect_failure(exc)}") from None
        except psycopg.ProgrammingError as exc:  # the URL itself: an unknown parameter, ...
            raise ConfigurationError(f"invalid PostgreSQL URL: {str(exc).strip()}") from None

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool, with the pool's settings (for a writer
        that must know whether its session survived: a new one may be on a restarted server)."""
        extra: dict[str, Any] = {} if "connect_timeout" in self.conninfo else {
            "connect_timeout": PROBE_TIMEOUT}
        return psycopg.connect(self.conninfo, **self.kwargs, **extra)

    def generic(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether `conn` is the connection `run(..., generic=True)` made, on which every
        statement runs with its generic plan (plan_cache_mode = force_generic_plan)."""
        return conn is self._generic

    @contextlib.contextmanager
    def _borrow(self, generic: bool) -> Iterator[psycopg.Connection[Any]]:
        """A pool connection; with `generic`, the connection kept for the worker's claims and
        endings and for single triggers, when no other thread uses it (saves taking one from
        the pool, and for a batch of endings setting its plan cache mode). It is made again
        when the server closed it."""
        if not generic or not self._generic_lock.acquire(blocking=False):
            with self.pool.connection() as pooled:
                yield pooled
            return
        try:
            conn = self._generic
            if conn is None or conn.closed or conn.broken:
                if conn is not None:
                    conn.close()
                self._generic = None
                conn = self._connect_generic()
                self._generic = conn
            try:
                yield conn
            finally:
                if conn.closed or conn.broken or (
                        conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
                    self._generic = None  # (a failed statement left it unusable)
                    conn.close()
        finally:
            self._generic_lock.release()

    def _connect_generic(self) -> psycopg.Connection[Any]:
        kwargs = dict(self.kwargs)
        kwargs["options"] = " ".join(
            filter(None, [kwargs.get("options"), "-c plan_cache_mode=force_generic_plan"]))
        if "connect_timeout" not in self.conninfo:
            kwargs["connect_timeout"] = PROBE_TIMEOUT
        return psycopg.connect(self.conninfo, **kwargs)

    def run(self, work: Callable[[psycopg.Connection[Any]], T], *, generic: bool = False) -> T:
        """Run `work(conn)`, retrying on a fresh connection while the server is unreachable.
        `generic`: on the connection whose statements all run with their generic plan, when
        free (only for statements that want it: see `generic`)."""
        self.open()
        deadline, delay, conflicts = None, 0.05, 0
        while True:
            try:
                with self._borrow(generic) as conn:
                    return work(conn)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                # the server rolled the whole transaction back: running it again is safe
                conflicts += 1
                if conflicts > 10:
                    raise
                time.sleep(0.001 * conflicts)
            except psycopg.OperationalError as exc:
                now = time.monotonic()
                deadline = deadline or now + self.reconnect_timeout
                if now >= deadline:
                    raise StorageUnavailable(f"PostgreSQL unreachable: {exc}") from None
                log.warning("PostgreSQL connection lost (%s); retrying", str(exc).strip())
                self.pool.check()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        def in_transaction(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction():
                return work(conn)

        return self.run(in_transaction)

    def close(self) -> None:
        with self._generic_lock:
            if self._generic is not None:
                self._generic.close()
                self._generic = None
        if self._opened:
            self.pool.close()
            self._opened = False


def connect_failure(exc: Exception) -> str:
    """The server's reason in a failed connection's message: `connection refused`, `database "x"
    does not exist`, `password authentication failed for user "y"`, ... (the last address tried
    when a host name has several; libpq's hints on tab-indented lines are left out)."""
    lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("\t")]
    reason = lines[-1] if lines else type(exc).__name__
    reason = re.sub(r"^(connection failed: )?connection to server .*? failed: ", "", reason.strip())
    reason = re.sub(r"^(FATAL|ERROR): +", "", reason)
    return reason[:1].lower() + reason[1:]
