"""When each API key was last used, to the minute, written behind the calls.

Authentication must cost no I/O, so a call only notes its key's minute in memory; a background
task writes the notes every `FLUSH_S` seconds in one transaction (a key's minute only moves
forward, so replicas writing the same key never move it back). ListApiKeys flushes this
replica's notes first; another replica's reach the database within `FLUSH_S`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from heads import utc_now
from service.errors import TransferdError
from service.store.database import Database
from service.store.schema import ApiKeyRow

log = logging.getLogger(__name__)

FLUSH_S = 30.0


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class KeyUsage:
    """Notes of keys used, written to `api_keys.last_used_at` in batches."""

    def __init__(self, db: Database, flush_s: float = FLUSH_S) -> None:
        self._db = db
        self._flush_s = flush_s
        self._pending: dict[str, datetime] = {}
        self._written: dict[str, datetime] = {}  # the minute last written, per key
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: str) -> None:
        """Notes a use of `key_id` now (on the event loop; no I/O)."""
        minute = minute_of(utc_now())
        if self._written.get(key_id) != minute:
            self._pending[key_id] = minute

    def forget(self, key_ids: set[str]) -> None:
        """Drops the notes of keys that no longer exist (their tenant was deleted)."""
        for key_id in key_ids:
            self._pending.pop(key_id, None)
            self._written.pop(key_id, None)

    async def flush(self) -> None:
        """Writes the pending notes (a failure keeps them for the next flush)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}

        def write(session: Session) -> None:
            for key_id, minute in pending.items():
                session.execute(
                    update(ApiKeyRow)
                    .where(ApiKeyRow.key_id == key_id)
                    .where(or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < minute))
                    .values(last_used_at=minute)
                )

        try:
            await self._db.run(write)
        except TransferdError:
            for key_id, minute in pending.items():  # newer notes taken meanwhile win
                self._pending.setdefault(key_id, minute)
            raise
        self._written.update(pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="key-usage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except TransferdError as error:
            log.warning("could not record when keys were last used: %s", error)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
            except Exception as error:  # the timer must outlive one failed write
                log.warning("could not record when keys were last used (retrying): %s", error)
