"""The metadata database: an engine, its sessions, and a one-thread executor so the loop never waits.

SQLite in WAL mode under `--data-dir` by default; any SQLAlchemy URL can replace it later.

The database file is watched: SQLite keeps writing to a file that was deleted or replaced under
it (its open descriptor still points at the old inode), so every call would answer OK and lose
everything at the next restart. The file's (st_dev, st_ino) is remembered at open and compared
before each transaction and by the health poll; once it differs, the database is *lost* for
this process: every call answers UNAVAILABLE and health goes NOT_SERVING until a restart.
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
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service import metrics
from service.errors import Unavailable
from service.store.disk_errors import disk_full_as_exhausted
from service.store.schema import upgrade

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
    cursor.close()


class Database:
    """Sessions on one engine; `run` executes a function with a session off the event loop.

    One worker thread serialises every database call: SQLite allows one writer at a time anyway,
    and the calls are short.
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE
        self.engine: Engine = create_engine(f"sqlite:///{self.path}")
        event.listen(self.engine, "connect", _sqlite_pragmas)
        added = upgrade(self.engine)
        if added:
            log.info("database upgraded: added columns %s", ", ".join(added))
        self._identity = _identity(self.path)
        self._lost: str | None = None
        metrics.DATABASE_INTACT.set(1)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")

    def intact(self) -> bool:
        """Whether the database file is still the one opened (an os.stat; cheap).

        The first time it is not, logs why, and closes the connections so that SQLite stops
        writing beside a file that is no longer the database.
        """
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
            Unavailable: the database file was removed or replaced since it was opened.
            ResourceExhausted: the disk (or the database) is full.
        """
        self.check_intact()
        try:
            with disk_full_as_exhausted("the database"), self._sessions.begin() as session:
                return work(session)
        except OperationalError as error:
            # An I/O error may be the first sign of a file that was removed under us.
            if not self.intact():
                raise Unavailable(self._message()) from error
            raise

    async def run(self, work: Callable[[Session], T]) -> T:
        """Runs `work` in a transaction on the database thread."""
        return await self.submit(work)

    def submit(self, work: Callable[[Session], T]) -> asyncio.Future[T]:
        """Queues `work` now (calls run in the order they are submitted) and returns its future."""
        return asyncio.get_running_loop().run_in_executor(self._executor, self.call, work)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()


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
