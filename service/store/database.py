"""The metadata database: an engine, its sessions, and a one-thread executor so the loop never waits.

SQLite in WAL mode under `--data-dir` by default; any SQLAlchemy URL can replace it later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.store.schema import Base

T = TypeVar("T")

DB_FILE = "transferd.db"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sqlite_pragmas(connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
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
        self.engine: Engine = create_engine(f"sqlite:///{data_dir / DB_FILE}")
        event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")

    def call(self, work: Callable[[Session], T]) -> T:
        """Runs `work` in a transaction on the calling thread (start-up and tests)."""
        with self._sessions.begin() as session:
            return work(session)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Runs `work` in a transaction on the database thread."""
        return await self.submit(work)

    def submit(self, work: Callable[[Session], T]) -> asyncio.Future[T]:
        """Queues `work` now (calls run in the order they are submitted) and returns its future."""
        return asyncio.get_running_loop().run_in_executor(self._executor, self.call, work)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()
