"""The change feed: what every replica must see at once (a head published or deleted, a key
revoked) reaches the caches of every replica.

A change is announced inside the transaction that makes it (`announce`), so it is sent if and
only if the change commits:

- PostgreSQL: `SELECT pg_notify('transferd_changes', '<json>')`, which PostgreSQL delivers at
  commit to every listening replica (this one included); each replica's listener
  (`service.store.change_listener`) hands it to the subscribers on the event loop. Notifications
  sent while a listener is disconnected are lost, so every (re)connect, and a timer every
  `poll_s` seconds, makes each subscriber re-read what it caches from the database.
- SQLite: one replica, so the feed delivers in this process only.

Either way the replica that made the change applies it as soon as its transaction commits (`run`),
before its caller answers: the caller's next request already sees it. Applying a change twice (here,
then from the listener) is harmless: every subscriber's `apply` only drops cached state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.errors import TransferdError
from service.store.change_listener import ChangeListener
from service.store.database import Database

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The PostgreSQL channel of the changes.
CHANNEL = "transferd_changes"
#: Seconds between two full re-reads, by default (`Settings.change_poll_s`).
DEFAULT_POLL_S = 10.0
# Where a transaction collects the changes it announced (its Session's `info`).
_PENDING = "transferd_changes"


class ChangeKind(StrEnum):
    HEAD_PUBLISHED = "head_published"
    HEAD_DELETED = "head_deleted"
    KEY_REVOKED = "key_revoked"
    #: Every key, job and head of `tenant` is gone (`service.store.tenant_purge`).
    TENANT_DELETED = "tenant_deleted"


@dataclass(frozen=True)
class Change:
    """One change: `tenant`, `name`, `versions` for heads, `key_id` for keys, `tenant` alone
    for a deleted tenant."""

    kind: ChangeKind
    tenant: str = ""
    name: str = ""
    versions: tuple[int, ...] = field(default=())
    key_id: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind.value,
                "tenant": self.tenant,
                "name": self.name,
                "versions": list(self.versions),
                "key_id": self.key_id,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Change:
        """Raises ValueError (or KeyError, TypeError) on a payload that is not a change."""
        data = json.loads(text)
        return cls(
            kind=ChangeKind(data["kind"]),
            tenant=str(data.get("tenant", "")),
            name=str(data.get("name", "")),
            versions=tuple(int(v) for v in data.get("versions", ())),
            key_id=str(data.get("key_id", "")),
        )


class Subscriber(Protocol):
    """What caches the database's state in memory (the head registry, the tenant directory)."""

    def apply(self, change: Change) -> None:
        """Drops what `change` made stale; on the event loop, without waiting for I/O."""

    async def reread(self) -> None:
        """Re-reads what is cached from the database (covers changes whose notice was lost).

        Raises:
            Unavailable: the database cannot be reached (the feed retries later).
        """


class ChangeFeed:
    """Announces changes in their transaction and delivers them to the subscribers.

    Args:
        db: The database the changes are made in.
        poll_s: Seconds between two full re-reads (PostgreSQL).
    """

    def __init__(self, db: Database, poll_s: float = DEFAULT_POLL_S) -> None:
        self._db = db
        self._poll_s = poll_s
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None
        self._listener: ChangeListener | None = None
        self._failing = False  # whether the last re-read failed (logs once per outage)
        self._stopping = False
        self.rereads = 0  # completed full re-reads (tests wait on it)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def announce(self, session: Session, change: Change) -> None:
        """Sends `change` when `session`'s transaction commits (call it inside the transaction)."""
        session.info.setdefault(_PENDING, []).append(change)
        if self._db.is_postgres:
            session.execute(select(func.pg_notify(CHANNEL, change.to_json())))

    async def run(self, work: Callable[[Session], T]) -> T:
        """`Database.run(work)`, then applies here what `work` announced, once committed."""

        def transaction(session: Session) -> tuple[T, list[Change]]:
            result = work(session)
            return result, list(session.info.pop(_PENDING, ()))

        result, changes = await self._db.run(transaction)
        for change in changes:
            self.deliver(change)
        return result

    def deliver(self, change: Change) -> None:
        """Applies `change` to every subscriber (on the event loop)."""
        for subscriber in self._subscribers:
            try:
                subscriber.apply(change)
            except Exception:  # one subscriber's bug must not keep a change from the others
                log.exception("applying %s failed", change)

    async def start(self) -> None:
        """PostgreSQL: starts listening, and re-reading every `poll_s` seconds and after every
        (re)connect of the listener. SQLite: nothing to start (one replica)."""
        if not self._db.is_postgres or self._poller is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._poller = self._loop.create_task(self._poll(), name="change-feed-reread")
        # The engine's URL as libpq reads it (psycopg's own connection, outside SQLAlchemy).
        url = self._db.engine.url.set(drivername="postgresql")
        self._listener = ChangeListener(
            url.render_as_string(hide_password=False),
            CHANNEL,
            on_payload=self._received,
            on_connected=self._reconnected,
        )
        self._listener.start()

    async def stop(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await asyncio.get_running_loop().run_in_executor(None, listener.stop)
        if self._poller is not None:
            # The flag as well as the cancel: Python 3.11's wait_for can swallow a cancellation
            # that arrives as its timeout fires, and the loop would then poll on (seen in CI).
            self._stopping = True
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    @property
    def listener(self) -> ChangeListener | None:
        """The PostgreSQL listener, once started."""
        return self._listener

    async def reread(self) -> bool:
        """Every subscriber re-reads now; False when the database could not be reached."""
        try:
            for subscriber in self._subscribers:
                await subscriber.reread()
        except TransferdError as error:
            if not self._failing:
                log.warning("re-reading the cached state failed (retrying): %s", error)
            self._failing = True
            return False
        if self._failing:
            log.info("re-read the cached state again after a failure")
        self._failing = False
        self.rereads += 1
        return True

    async def _poll(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            except TimeoutError:
                pass
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self.reread()
            except Exception:  # the timer must outlive any bug of one re-read
                log.exception("re-reading the cached state failed")

    # Called on the listener's thread.
    def _received(self, payload: str) -> None:
        try:
            change = Change.from_json(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a change notice that is not one: %.200r", payload)
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.deliver, change)

    def _reconnected(self) -> None:
        # Whatever changed while the listener was away is seen by a full re-read.
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
