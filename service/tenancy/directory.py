"""The tenant directory: tenants and API keys in the database, keys cached in memory for auth.

Every authenticated RPC consults the key cache, not the database: authentication costs no I/O,
and keeps working while the database is unreachable. The cache holds each active key's id,
tenant, SHA-256 (never a secret) and expiry, which every replica checks against its own clock.
On PostgreSQL a key missing from it (created on another replica) is looked up in the database,
a few at a time, and added; on SQLite this process made every key, so a miss is final. A
revocation or a tenant's deletion reaches every replica through the change feed; the feed's
periodic re-read reloads the active keys, which covers a lost notice.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from heads import utc_now
from service.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    shown,
)
from service.store.changes import Change, ChangeFeed, ChangeKind
from service.store.database import Database, as_utc
from service.store.schema import ApiKeyRow, TenantRow
from service.tenancy import keys
from service.tenancy.key_usage import KeyUsage
from service.tenancy.principal import Principal

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ADMIN_KEY_ID = "admin"
#: Database look-ups of keys not cached (made on another replica) running at once.
KEY_LOOKUPS = 2
#: Revocations remembered so that a database read begun before one cannot bring the key back.
RECENT_REVOCATIONS = 1024
#: Live keys a tenant may hold, by default (`Settings.max_keys_per_tenant`).
DEFAULT_MAX_KEYS = 20
#: The longest time to live a key may be given (ten years).
MAX_TTL_S = 10 * 365 * 24 * 3600
#: The one message of every refused key: which keys exist is nobody's business.
REFUSED = "invalid, expired or revoked API key"


@dataclass(frozen=True)
class _CachedKey:
    tenant: str
    secret_sha256: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant: str
    secret: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret, nor the secret's hash."""

    key_id: str
    tenant: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utc_now()


@dataclass(frozen=True)
class TenantInfo:
    name: str
    created_at: datetime


def check_tenant_name(name: str, field: str = "tenant") -> None:
    # fullmatch: with match and `$`, "acme\n" passed (`$` also matches before a final newline).
    if not TENANT_NAME.fullmatch(name):
        raise InvalidArgument(
            field,
            "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )


class TenantDirectory:
    """Creates and lists tenants and keys, revokes keys, and authenticates bearer secrets.

    Args:
        db: The database of tenants and keys.
        admin_secret: The admin key's secret (None: no admin key).
        changes: The change feed that announces revocations and brings those of other
            replicas (None: one of its own, for one process).
        max_keys_per_tenant: Live (neither revoked nor expired) keys a tenant may hold.
        usage: Where uses of keys are noted (None: one of its own).
    """

    def __init__(
        self,
        db: Database,
        admin_secret: str | None,
        changes: ChangeFeed | None = None,
        *,
        max_keys_per_tenant: int = DEFAULT_MAX_KEYS,
        usage: KeyUsage | None = None,
    ) -> None:
        self._db = db
        self._admin_secret = admin_secret
        self._max_keys = max_keys_per_tenant
        self.usage = usage or KeyUsage(db)
        # Look-ups of unknown keys at once: a flood of forged keys must not take every database
        # thread from the calls that need one (it waits here instead).
        self._lookups = asyncio.Semaphore(KEY_LOOKUPS)
        self._keys: dict[str, _CachedKey] = db.call(_load_active_keys)
        self._revoked_ids: set[str] = db.call(_load_revoked_ids)
        # (sequence, key_id) of the latest revocations seen here; `_sequence` counts them all.
        self._revocations: deque[tuple[int, str]] = deque(maxlen=RECENT_REVOCATIONS)
        self._sequence = 0
        self._changes = changes or ChangeFeed(db)
        self._changes.subscribe(self)

    async def authenticate(self, secret: str) -> Principal:
        """The principal a bearer secret stands for.

        Raises:
            Unauthenticated: unknown, forged, revoked or expired (one message for all: no
                oracle; the reason, for the audit log, is on the exception).
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
        if not (keys.matches(secret, stored) and cached is not None and key_id is not None):
            revoked = key_id is not None and key_id in self._revoked_ids
            raise Unauthenticated(REFUSED, reason="revoked" if revoked else "unknown")
        if cached.expires_at is not None and cached.expires_at <= utc_now():
            raise Unauthenticated(REFUSED, reason="expired")
        self.usage.touch(key_id)
        return Principal(tenant=cached.tenant, key_id=key_id)

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

    async def list_tenants(self) -> list[TenantInfo]:
        def query(session: Session) -> list[TenantInfo]:
            rows = session.scalars(select(TenantRow).order_by(TenantRow.name))
            return [TenantInfo(row.name, as_utc(row.created_at)) for row in rows]

        return await self._db.run(query)

    async def create_key(self, tenant: str, ttl_seconds: int = 0) -> IssuedKey:
        """A new key of `tenant`, expiring after `ttl_seconds` (0: never).

        Raises:
            InvalidArgument: a bad tenant name or ttl_seconds.
            NotFound: no such tenant.
            ResourceExhausted: the tenant holds `max_keys_per_tenant` live keys.
        """
        check_tenant_name(tenant)
        if not 0 <= ttl_seconds <= MAX_TTL_S:
            raise InvalidArgument(
                "ttl_seconds",
                f"must be 0 (no expiry) to {MAX_TTL_S} (ten years), not {ttl_seconds}",
            )
        key_id, secret = keys.new_key()
        digest = keys.hash_secret(secret)
        created = utc_now()
        expires = created + timedelta(seconds=ttl_seconds) if ttl_seconds else None

        def insert(session: Session) -> None:
            # Locked: two replicas creating the tenant's keys at once count one after the other.
            locked = select(TenantRow).where(TenantRow.name == tenant).with_for_update()
            if session.scalars(locked).first() is None:
                raise NotFound(f"tenant {shown(tenant)} does not exist")
            live = session.scalar(
                select(func.count())
                .select_from(ApiKeyRow)
                .where(
                    ApiKeyRow.tenant == tenant,
                    ApiKeyRow.revoked_at.is_(None),
                    or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > created),
                )
            )
            if (live or 0) >= self._max_keys:
                raise ResourceExhausted(
                    f"tenant {shown(tenant)} has {live} live keys, the most allowed is "
                    f"{self._max_keys}; revoke one first"
                )
            session.add(
                ApiKeyRow(
                    key_id=key_id,
                    tenant=tenant,
                    secret_sha256=digest,
                    created_at=created,
                    expires_at=expires,
                )
            )

        await self._db.run(insert)
        self._keys[key_id] = _CachedKey(tenant, digest, expires)
        return IssuedKey(key_id, tenant, secret, created, expires)

    async def list_keys(self, tenant: str, include_revoked: bool = False) -> list[KeyInfo]:
        """The tenant's keys, oldest first; with their last use as recorded by every replica
        (this one's notes written first).

        Raises:
            NotFound: no such tenant.
        """
        check_tenant_name(tenant)
        await self.usage.flush()

        def query(session: Session) -> list[KeyInfo] | None:
            if session.get(TenantRow, tenant) is None:
                return None
            select_ = select(ApiKeyRow).where(ApiKeyRow.tenant == tenant)
            if not include_revoked:
                select_ = select_.where(ApiKeyRow.revoked_at.is_(None))
            rows = session.scalars(select_.order_by(ApiKeyRow.created_at, ApiKeyRow.key_id))
            return [_key_info(row) for row in rows]

        found = await self._db.run(query)
        if found is None:
            raise NotFound(f"tenant {shown(tenant)} does not exist")
        return found

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
        """Forgets a revoked key, or every key of a deleted tenant (see `ChangeFeed`)."""
        if change.kind is ChangeKind.KEY_REVOKED:
            self._forget({change.key_id})
            self._revoked_ids.add(change.key_id)
        elif change.kind is ChangeKind.TENANT_DELETED:
            gone = {key_id for key_id, key in self._keys.items() if key.tenant == change.tenant}
            self._forget(gone)
            self.usage.forget(gone)

    def _forget(self, key_ids: set[str]) -> None:
        for key_id in key_ids:
            self._sequence += 1
            self._revocations.append((self._sequence, key_id))
            self._keys.pop(key_id, None)

    async def reread(self) -> None:
        """Reloads the active keys: drops those revoked meanwhile, adds those created."""
        since = self._sequence
        active = await self._db.run(_load_active_keys)
        for key_id in self._revoked_since(since):
            active.pop(key_id, None)
        self._keys = active
        self._revoked_ids = await self._db.run(_load_revoked_ids)

    async def _look_up(self, key_id: str) -> _CachedKey | None:
        """A key this replica has not seen (created on another), from the database; cached."""
        since = self._sequence

        def query(session: Session) -> tuple[_CachedKey | None, bool]:
            """(the key if active, whether it is revoked)."""
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                return None, row is not None
            return _cached(row), False

        async with self._lookups:
            found, revoked = await self._db.run(query)
        if revoked:
            self._revoked_ids.add(key_id)
        if found is None or key_id in self._revoked_since(since):
            return None
        self._keys[key_id] = found
        return found

    def _revoked_since(self, sequence: int) -> set[str]:
        """Keys revoked after the `sequence`th revocation (reads begun then must not keep them).
        Of the latest `RECENT_REVOCATIONS` only: far more than one read ever overlaps."""
        return {key_id for number, key_id in self._revocations if number > sequence}


def _moment(value: datetime | None) -> datetime | None:
    """A nullable column's time in UTC (SQLite hands it back without its zone)."""
    return as_utc(value) if value is not None else None


def _cached(row: ApiKeyRow) -> _CachedKey:
    return _CachedKey(row.tenant, row.secret_sha256, _moment(row.expires_at))


def _key_info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id, tenant=row.tenant, created_at=as_utc(row.created_at),
        expires_at=_moment(row.expires_at), last_used_at=_moment(row.last_used_at),
        revoked_at=_moment(row.revoked_at),
    )  # fmt: skip


def _load_active_keys(session: Session) -> dict[str, _CachedKey]:
    """Keys not revoked, expired ones included (so that a refusal can say "expired")."""
    rows = session.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
    return {row.key_id: _cached(row) for row in rows}


def _load_revoked_ids(session: Session) -> set[str]:
    """Ids of revoked keys: for the audit log and metrics only (a refusal's reason)."""
    query = select(ApiKeyRow.key_id).where(ApiKeyRow.revoked_at.is_not(None))
    return set(session.scalars(query))
