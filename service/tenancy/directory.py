"""The tenant directory: tenants and API keys in the database, keys cached in memory for auth.

Every authenticated RPC consults the key cache, not the database: authentication costs no I/O,
and keeps working while the database is unreachable. The cache holds each active key's id,
tenant and SHA-256 (never a secret). On PostgreSQL a key missing from it (created on another
replica) is looked up in the database, a few at a time, and added; on SQLite this process made
every key, so a miss is final. A revocation reaches every replica through the change feed;
the feed's periodic re-read reloads the active keys, which covers a lost notice.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from heads import utc_now
from service.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated, shown
from service.store.changes import Change, ChangeFeed, ChangeKind
from service.store.database import Database
from service.store.schema import ApiKeyRow, TenantRow
from service.tenancy import keys
from service.tenancy.principal import Principal

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ADMIN_KEY_ID = "admin"
#: Database look-ups of keys not cached (made on another replica) running at once.
KEY_LOOKUPS = 2
#: Revocations remembered so that a database read begun before one cannot bring the key back.
RECENT_REVOCATIONS = 1024


@dataclass(frozen=True)
class _CachedKey:
    tenant: str
    secret_sha256: str


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant: str
    secret: str


def check_tenant_name(name: str, field: str = "tenant") -> None:
    # fullmatch: with match and `$`, "acme\n" passed (`$` also matches before a final newline).
    if not TENANT_NAME.fullmatch(name):
        raise InvalidArgument(
            field,
            "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )


class TenantDirectory:
    """Creates tenants and keys, revokes keys, and authenticates bearer secrets.

    Args:
        db: The database of tenants and keys.
        admin_secret: The admin key's secret (None: no admin key).
        changes: The change feed that announces revocations and brings those of other
            replicas (None: one of its own, for one process).
    """

    def __init__(
        self, db: Database, admin_secret: str | None, changes: ChangeFeed | None = None
    ) -> None:
        self._db = db
        self._admin_secret = admin_secret
        # Look-ups of unknown keys at once: a flood of forged keys must not take every database
        # thread from the calls that need one (it waits here instead).
        self._lookups = asyncio.Semaphore(KEY_LOOKUPS)
        self._keys: dict[str, _CachedKey] = db.call(_load_active_keys)
        # (sequence, key_id) of the latest revocations seen here; `_sequence` counts them all.
        self._revocations: deque[tuple[int, str]] = deque(maxlen=RECENT_REVOCATIONS)
        self._sequence = 0
        self._changes = changes or ChangeFeed(db)
        self._changes.subscribe(self)

    async def authenticate(self, secret: str) -> Principal:
        """The principal a bearer secret stands for.

        Raises:
            Unauthenticated: unknown, forged or revoked (one message for all: no oracle).
            Unavailable: the key is not cached and the database cannot be reached.
        """
        if keys.matches_admin(secret, self._admin_secret):
            return Principal(tenant=None, key_id=ADMIN_KEY_ID)
        key_id = keys.key_id_of(secret)
        cached = self._keys.get(key_id) if key_id else None
        # SQLite: this process made every key, so the cache is complete and a miss is final.
        if cached is None and key_id is not None and self._db.is_postgres:
            cached = await self._look_up(key_id)
        # Hash even when the key id is unknown, so timing does not tell which ids exist.
        stored = cached.secret_sha256 if cached else keys.hash_secret("")
        if keys.matches(secret, stored) and cached is not None and key_id is not None:
            return Principal(tenant=cached.tenant, key_id=key_id)
        raise Unauthenticated("invalid or revoked API key")

    async def create_tenant(self, name: str) -> str:
        check_tenant_name(name)

        def insert(session: Session) -> bool:
            if session.get(TenantRow, name) is not None:
                return False
            session.add(TenantRow(name=name, created_at=utc_now()))
            return True

        if not await self._db.run(insert):
            raise AlreadyExists(f"tenant {shown(name)} already exists")
        return name

    async def create_key(self, tenant: str) -> IssuedKey:
        check_tenant_name(tenant)
        key_id, secret = keys.new_key()
        digest = keys.hash_secret(secret)

        def insert(session: Session) -> bool:
            if session.get(TenantRow, tenant) is None:
                return False
            session.add(
                ApiKeyRow(key_id=key_id, tenant=tenant, secret_sha256=digest, created_at=utc_now())
            )
            return True

        if not await self._db.run(insert):
            raise NotFound(f"tenant {shown(tenant)} does not exist")
        self._keys[key_id] = _CachedKey(tenant, digest)
        return IssuedKey(key_id, tenant, secret)

    async def revoke_key(self, key_id: str) -> None:
        if not key_id:
            raise InvalidArgument("key_id", "is required")

        def revoke(session: Session) -> bool:
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utc_now()
            return True

        def revoke_and_announce(session: Session) -> bool:
            revoked = revoke(session)
            if revoked:  # every replica forgets the key (this one before answering)
                self._changes.announce(session, Change(ChangeKind.KEY_REVOKED, key_id=key_id))
            return revoked

        if not await self._changes.run(revoke_and_announce):
            raise NotFound(f"no active API key {shown(key_id)}")

    def apply(self, change: Change) -> None:
        """Forgets a revoked key (see `ChangeFeed`)."""
        if change.kind is ChangeKind.KEY_REVOKED:
            self._sequence += 1
            self._revocations.append((self._sequence, change.key_id))
            self._keys.pop(change.key_id, None)

    async def reread(self) -> None:
        """Reloads the active keys: drops those revoked meanwhile, adds those created."""
        since = self._sequence
        active = await self._db.run(_load_active_keys)
        for key_id in self._revoked_since(since):
            active.pop(key_id, None)
        self._keys = active

    async def _look_up(self, key_id: str) -> _CachedKey | None:
        """A key this replica has not seen (created on another), from the database; cached."""
        since = self._sequence

        def query(session: Session) -> _CachedKey | None:
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                return None
            return _CachedKey(row.tenant, row.secret_sha256)

        async with self._lookups:
            found = await self._db.run(query)
        if found is None or key_id in self._revoked_since(since):
            return None
        self._keys[key_id] = found
        return found

    def _revoked_since(self, sequence: int) -> set[str]:
        """Keys revoked after the `sequence`th revocation (reads begun then must not keep them).
        Of the latest `RECENT_REVOCATIONS` only: far more than one read ever overlaps."""
        return {key_id for number, key_id in self._revocations if number > sequence}


def _load_active_keys(session: Session) -> dict[str, _CachedKey]:
    rows = session.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
    return {row.key_id: _CachedKey(row.tenant, row.secret_sha256) for row in rows}
