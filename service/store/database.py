"""The metadata database: an engine, its sessions, and worker threads so the loop never waits.

SQLite in WAL mode under `--data-dir` by default; PostgreSQL (psycopg 3) when `database_url`
names it, shared by every replica. The schema is migrated at open (`service.store.migrate`).

SQLite: the database file is watched. SQLite keeps writing to a file that was deleted or replaced
under it (its open descriptor still points at the old inode), so every call would answer OK and
lose everything at the next restart. The file's (st_dev, st_ino) is remembered at open and
compared before each transaction and by the health poll; once it differs, the database is *lost*
for this process: every call answers UNAVAILABLE and health goes NOT_SERVING until a restart.

PostgreSQL: a connection that fails (the server down, the network cut) makes that call answer
UNAVAILABLE with a clear message; the pool checks connections before use, so calls work again
as soon as the server is back, with no restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service import metrics
from service.errors import Unavailable
from service.store.disk_errors import disk_full_as_exhausted
from service.store.migrate import migrate
from service.store.postgres_socket import CONNECT_TIMEOUT_S, KEEPALIVES

T = TypeVar("T")

log = logging.getLogger(__name__)

DB_FILE = "transferd.db"
# SQLite's companions of the database file in WAL mode.
WAL_SUFFIXES = ("-wal", "-shm")


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's (st_dev, st_ino), or None when it is gone."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def as_utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    # WAL: readers never block the writer; a commit is durable without a full fsync per write.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # What is deleted (a tenant, a head, a job's examples) is overwritten in the file, not left
    # in free pages where a copy of the file would still hold it.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    # Transactions are SQLAlchemy's to begin (`_sqlite_begin`), not pysqlite's, which would
    # start one only at the first write, after the reads it depends on.
    connection.isolation_level = None


def _sqlite_begin(connection) -> None:
    # IMMEDIATE: a transaction holds the write lock from its first read, so a read-then-write
    # (a count, then an insert under a limit) cannot interleave with another process's. In one
    # process the database thread serialises transactions anyway: this costs nothing there.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


#: PostgreSQL: worker threads, and pooled connections, of one replica's database calls.
POSTGRES_THREADS = 8


def sqlite_url(data_dir: Path) -> str:
    """The embedded default: the SQLite file under the data directory."""
    return f"sqlite:///{data_dir / DB_FILE}"


class Database:
    """Sessions on one engine; `run` executes a function with a session off the event loop.

    SQLite: one worker thread serialises every call (SQLite allows one writer at a time anyway,
    and the calls are short). PostgreSQL: `POSTGRES_THREADS` threads on as many pooled
    connections.

    Args:
        data_dir: The data directory (the SQLite file lives there unless `url` says otherwise).
        url: A SQLAlchemy URL (see `Settings.database_url`); None: the SQLite file.
    """

    def __init__(self, data_dir: Path, url: str | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        url = url or sqlite_url(data_dir)
        parsed = make_url(url)
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        # The SQLite file (watched, see the module doc); None on PostgreSQL.
        self.path: Path | None = None if self.is_postgres else Path(parsed.database or "")
        if self.is_postgres:
            self.engine: Engine = create_engine(
                url,
                pool_size=POSTGRES_THREADS,
                pool_pre_ping=True,  # a connection the server dropped is replaced, not used
                # Bounded waits on a lost peer: a cut connection fails its call, not hangs it.
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVES},
            )
            self.where = f"PostgreSQL at {parsed.host}:{parsed.port or 5432}/{parsed.database}"
        else:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
            self.where = f"SQLite at {self.path}"
        try:
            migrate(self.engine)
        except (OperationalError, InterfaceError) as error:
            self.engine.dispose()
            if not self.is_postgres:
                raise
            raise Unavailable(
                f"the database ({self.where}) is unreachable: {_first_line(error)}"
            ) from None
        self._identity = _identity(self.path) if self.path else None
        self._lost: str | None = None
        metrics.DATABASE_INTACT.set(1)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(
            max_workers=POSTGRES_THREADS if self.is_postgres else 1, thread_name_prefix="db"
        )

    def intact(self) -> bool:
        """Whether the database file is still the one opened (an os.stat; cheap).

        The first time it is not, logs why, and closes the connections so that SQLite stops
        writing beside a file that is no longer the database.
        """
        if self.path is None:
            return True  # PostgreSQL: an outage is answered per call, and is not a lost file
        if self._lost is not None:
            return False
        now = _identity(self.path)
        if now == self._identity:
            return True
        self._lost = "removed" if now is None else "replaced"
        metrics.DATABASE_INTACT.set(0)
        log.error("%s; health NOT_SERVING, every call that needs it UNAVAILABLE", self._message())
        try:  # on the database thread: a connection must not close while a call uses it
            self._executor.submit(self.engine.dispose)
        except RuntimeError:  # already closed
            pass
        return False

    def check_intact(self) -> None:
        """Raises `Unavailable` when the database file was removed or replaced."""
        if not self.intact():
            raise Unavailable(self._message())

    def _message(self) -> str:
        return (
            f"the database file {self.path} was {self._lost or 'removed or replaced'} while the "
            "server was running; the server must be restarted after it is restored"
        )

    def call(self, work: Callable[[Session], T]) -> T:
        """Runs `work` in a transaction on the calling thread (start-up and tests).

        Raises:
            Unavailable: the database file was removed or replaced since it was opened, or the
                database server cannot be reached.
            ResourceExhausted: the disk (or the database) is full.
        """
        self.check_intact()
        try:
            with disk_full_as_exhausted("the database"), self._sessions.begin() as session:
                return work(session)
        except (OperationalError, InterfaceError) as error:
            if self.is_postgres:
                metrics.DATABASE_ERRORS.inc()
                raise Unavailable(
                    f"the database ({self.where}) is unavailable: {_first_line(error)}; retry"
                ) from error
            # An I/O error may be the first sign of a file that was removed under us.
            if not self.intact():
                raise Unavailable(self._message()) from error
            raise

    async def run(self, work: Callable[[Session], T]) -> T:
        """Runs `work` in a transaction on the database thread."""
        return await self.submit(work)

    def submit(self, work: Callable[[Session], T]) -> asyncio.Future[T]:
        """Queues `work` now and returns its future (on SQLite, calls run in the order they are
        submitted; on PostgreSQL, several at once)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, self.call, work)

    async def drop_log_copies(self) -> None:
        """SQLite: writes the write-ahead log into the file and truncates it, so that rows just
        deleted leave no copy in the log (`secure_delete` has overwritten them in the file).
        PostgreSQL: nothing (its own VACUUM reclaims dead rows)."""
        if self.is_postgres:
            return

        def checkpoint() -> None:
            # Outside any transaction: a checkpoint cannot finish inside one.
            connection = self.engine.raw_connection()
            try:
                connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                connection.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, checkpoint)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()


def _first_line(error: Exception) -> str:
    """The driver's own message, first line (psycopg's carry the server's details below)."""
    orig = getattr(error, "orig", None) or error
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def set_aside_stale_wal(data_dir: Path, stamp: str) -> list[Path]:
    """When the database file is missing, renames its leftover -wal/-shm files (never deletes).

    SQLite would replay a stale write-ahead log into a new (or a restored) database file of the
    same name, so they must not stay beside it; they are kept for whoever investigates.

    Returns:
        The new paths of the files set aside.
    """
    path = data_dir / DB_FILE
    if path.exists():
        return []
    moved: list[Path] = []
    for suffix in WAL_SUFFIXES:
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            target = stale.with_name(f"{stale.name}.stale-{stamp}")
            os.rename(stale, target)
            moved.append(target)
    return moved
