"""PostgreSQL LISTEN on a connection of its own, in a thread, reconnecting by itself.

The connection is psycopg's (autocommit, outside SQLAlchemy's pool: a listening connection must
stay open and must never be lent to a query). A connection lost (the server restarted, the
network cut, the backend terminated) is replaced with a growing pause between tries; after every
(re)connect `on_connected` runs, since notifications sent meanwhile were lost. TCP keepalives and
a ping bound how long a silently dead connection goes unnoticed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo

from service.store.postgres_socket import CONNECT_TIMEOUT_S, KEEPALIVES

log = logging.getLogger(__name__)

#: Seconds one wait for notifications lasts before the stop flag and the ping are checked.
WAIT_S = 0.5
#: Seconds between two pings of an idle connection (a dead one fails the ping).
PING_S = 5.0
#: Pauses between reconnection tries: from the first, doubled up to the last.
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
#: The listener's application_name in pg_stat_activity.
APPLICATION_NAME = "transferd-changes"


class ChangeListener:
    """Listens to `channel` and hands each payload to `on_payload` (on the listener's thread).

    Args:
        conninfo: A libpq connection string or URI.
        channel: The channel to LISTEN to (a plain identifier).
        on_payload: Called with each notification's payload.
        on_connected: Called after each successful (re)connect, once listening.
    """

    def __init__(
        self,
        conninfo: str,
        channel: str,
        on_payload: Callable[[str], None],
        on_connected: Callable[[], None],
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._on_payload = on_payload
        self._on_connected = on_connected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
        self.connects = 0  # successful (re)connects, for tests and logs
        self.backend_pid: int | None = None  # the listening backend, while connected

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops listening (within about `WAIT_S`) and closes the connection."""
        self._stop.set()
        self._thread.join(timeout=WAIT_S + CONNECT_TIMEOUT_S + 1)

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = FIRST_BACKOFF_S
            except psycopg.Error as error:
                if self._stop.is_set():
                    break
                log.warning(
                    "change listener: connection lost or refused (%s); retrying in %.1fs",
                    (str(error).strip().splitlines() or [type(error).__name__])[0],
                    backoff,
                )
            except Exception:  # a bug in a callback: log it, and keep the replica listening
                log.exception("change listener failed; reconnecting")
            finally:
                self.backend_pid = None
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _listen(self) -> None:
        conninfo = make_conninfo(
            self._conninfo,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=APPLICATION_NAME,
            **KEEPALIVES,
        )
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f"LISTEN {self._channel}")
            self.backend_pid = connection.info.backend_pid
            self.connects += 1
            if self.connects > 1:
                log.info("change listener: connected again")
            self._on_connected()
            pinged = time.monotonic()
            while not self._stop.is_set():
                for notice in connection.notifies(timeout=WAIT_S):
                    self._on_payload(notice.payload)
                if time.monotonic() - pinged > PING_S:
                    connection.execute("SELECT 1")
                    pinged = time.monotonic()
