"""The head registry: tenant-scoped versions of heads, published atomically, loaded through an LRU.

Every method takes the tenant from the caller's key: a head of another tenant is simply not
found, exactly like one that never existed.

The database holds every version's artifacts (`head_blobs`, by SHA-256); the local files are a
cache of them. A version whose local files are missing (published by another replica) or fail
their checks is loaded from the database's copy, verified, and written back. Only when that copy
is missing or damaged too (or the row predates it) is the version damaged (DATA_LOSS).

Cards are cached (`card_cache`) and loaded heads too (`head_cache`), so that a Predict on a head
used recently needs no database call; the change feed (`changes`) drops what other replicas made
stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from sqlalchemy import Select, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from heads import HeadCard, HeadFormatError, LoadedHead, TrainedHead, utc_now
from service.errors import (
    DataLoss,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TransferdError,
    Unavailable,
    shown,
)
from service.store.card_cache import CardCache
from service.store.changes import Change, ChangeFeed, ChangeKind
from service.store.database import Database
from service.store.head_cache import HeadCache, Key
from service.store.head_files import HeadFiles, onnx_damage
from service.store.recovery import SweepReport, recover_at_start_up
from service.store.schema import HeadBlobRow, HeadRow, TenantRow

log = logging.getLogger(__name__)

HEAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
#: Publishing retries this often when other replicas keep taking the chosen version.
PUBLISH_ATTEMPTS = 20


def check_head_name(name: str, field: str = "head") -> None:
    # fullmatch: with match and `$`, "model\n" passed and made a folder with a newline in its name.
    if not HEAD_NAME.fullmatch(name):
        raise InvalidArgument(
            field, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def _not_found(name: str, version: int) -> NotFound:
    """The one wording of a missing head (another tenant's, deleted, or never trained)."""
    which = f" version {version}" if version else ""
    return NotFound(f"head {shown(name)}{which} not found")


class StoredHead(HeadCard):
    """A published card as the registry lists it, with the health mark stored beside it.

    `damage` is not a card field (the card file never carries it): None while the version's
    files serve, else why they cannot (e.g. "its ONNX file fails the card's checksum").
    """

    damage: str | None = None

    @classmethod
    def of(cls, card_json: str, damage: str | None) -> StoredHead:
        card = HeadCard.from_json(card_json)
        # Validated just above: built without validating (and copying) every label again.
        return cls.model_construct(**dict(card), damage=damage)


@dataclass(frozen=True)
class HeadQuotas:
    """Per-tenant limits on stored heads, counting live (not deleted) versions."""

    max_heads_per_tenant: int = 1000
    max_versions_per_head: int = 100


class _Damaged(Exception):
    """A version's files are there but cannot serve; `reason` is safe to show its tenant."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _live(tenant: str, name: str | None = None) -> Select[HeadRow]:
    """Published, not deleted versions of a tenant's heads (of one name when given)."""
    query = select(HeadRow).where(HeadRow.tenant == tenant, HeadRow.deleted_at.is_(None))
    return query if name is None else query.where(HeadRow.name == name)


class HeadRegistry:
    """Publishes, lists, finds, deletes and loads heads.

    Args:
        db: Metadata database (the source of truth for what is published).
        files: Where head artifacts live.
        cache_size: Most loaded heads kept in memory (LRU).
        executor: Where ONNX sessions are built (CPU work).
        cache_bytes: Most estimated bytes of loaded heads kept in memory.
        quotas: Per-tenant limits on heads and versions.
        changes: The change feed that announces this registry's changes and brings those of
            other replicas (None: one of its own, for one process).
    """

    def __init__(
        self,
        db: Database,
        files: HeadFiles,
        cache_size: int,
        executor: Executor,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        quotas: HeadQuotas | None = None,
        changes: ChangeFeed | None = None,
    ) -> None:
        self._db = db
        self._files = files
        self._cache = HeadCache(cache_size, cache_bytes)
        self._cards: CardCache[StoredHead] = CardCache()
        self._changes = changes or ChangeFeed(db)
        self._changes.subscribe(self)
        self._executor = executor
        self._quotas = quotas or HeadQuotas()
        self._publish_lock = asyncio.Lock()

    def sweep_unpublished(self) -> SweepReport:
        """At start-up: refuses a lost database, then sweeps (see `service.store.recovery`).

        Raises:
            StoreNeedsRepair: the database has no head row while head folders have valid cards.
        """
        return recover_at_start_up(self._db, self._files)

    async def check_quota(self, tenant: str, head: str) -> None:
        """Refuses a new version of `head` when the tenant is at a quota.

        Callers check before queuing a job; `publish` checks again.

        Raises:
            ResourceExhausted: `head` is new and the tenant has the most heads allowed, or
                `head` has the most live versions allowed.
        """
        self._check_counts(head, *await self._db.run(lambda s: _counts(s, tenant, head)))

    def _check_counts(self, head: str, heads: int, versions: int) -> None:
        quotas = self._quotas
        if versions == 0 and heads >= quotas.max_heads_per_tenant:
            raise ResourceExhausted(
                f"this tenant has {heads} heads, the most allowed is "
                f"{quotas.max_heads_per_tenant}; delete a head before training a new one"
            )
        if versions >= quotas.max_versions_per_head:
            raise ResourceExhausted(
                f"head {shown(head)} has {versions} versions, the most allowed is "
                f"{quotas.max_versions_per_head}; delete old versions before training it again"
            )

    async def publish(
        self,
        tenant: str,
        name: str,
        trained: TrainedHead,
        backbone: str,
        fingerprint: str,
        *,
        commit_with: Callable[[Session, int], None] | None = None,
    ) -> HeadCard:
        """Publishes `trained` as the next version of `name`: the artifacts (in the database,
        write-once by SHA-256, and in the local files), then the row that makes it visible.

        Versions stay consistent across replicas through the database's unique constraint on
        (tenant, name, version), not a lock: when another replica took the version chosen here
        first, the next one is chosen and the publish tried again.

        Args:
            commit_with: Runs in the row's transaction with the version published, and may
                raise to publish nothing (a training job checks that it still holds its lease,
                and records its success in the same commit).

        Raises:
            ResourceExhausted: over a quota, or the disk is full.
            Unavailable: the database is unreachable, or its file was removed or replaced.
        """
        onnx_sha256 = hashlib.sha256(trained.onnx_bytes).hexdigest()
        # Serialises this process's publishes: the version number and its folder go together.
        async with self._publish_lock:
            for _ in range(PUBLISH_ATTEMPTS):
                version, heads, versions = await self._db.run(
                    lambda session: _next_version(session, tenant, name)
                )
                self._check_counts(name, heads, versions)
                card = trained.to_card(
                    tenant=tenant, name=name, version=version,
                    backbone=backbone, backbone_fingerprint=fingerprint,
                )  # fmt: skip
                card_json = card.to_json()
                card_bytes = card_json.encode()
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(
                    self._executor, self._files.write,
                    tenant, name, version, trained.onnx_bytes, card_json,
                )  # fmt: skip

                def insert(session: Session, version: int = version, card_json: str = card_json,
                           card_bytes: bytes = card_bytes) -> None:  # fmt: skip
                    put_blob(session, onnx_sha256, trained.onnx_bytes)
                    card_sha256 = put_blob(session, None, card_bytes)
                    session.add(
                        HeadRow(
                            tenant=tenant,
                            name=name,
                            version=version,
                            card_json=card_json,
                            created_at=utc_now(),
                            onnx_sha256=onnx_sha256,
                            card_sha256=card_sha256,
                        )  # fmt: skip
                    )
                    session.flush()  # a version another replica took fails here, not later
                    self._changes.announce(
                        session, Change(ChangeKind.HEAD_PUBLISHED, tenant, name, (version,))
                    )
                    if commit_with is not None:
                        commit_with(session, version)

                try:
                    await self._changes.run(insert)
                except IntegrityError:
                    # Another replica published this version first: ours is not published.
                    await loop.run_in_executor(
                        self._executor, self._files.remove, tenant, name, version
                    )
                    log.info("%s/%s: version %d was taken meanwhile; next", tenant, name, version)
                    continue
                except BaseException:
                    # Never published (no row), and the job reports the failure: the folder is
                    # ours to take back, and must not come back through `transferd repair`.
                    await loop.run_in_executor(
                        self._executor, self._files.remove, tenant, name, version
                    )
                    raise
                return card
        raise Unavailable(
            f"head {shown(name)}: could not publish a version after {PUBLISH_ATTEMPTS} tries "
            "(other replicas kept publishing it); retry"
        )

    async def list(self, tenant: str, all_versions: bool = False) -> list[StoredHead]:
        def query(session: Session) -> list[tuple[str, str | None]]:
            rows = session.scalars(_live(tenant).order_by(HeadRow.name, HeadRow.version))
            return [(row.card_json, row.damage) for row in rows]

        cards = [StoredHead.of(text, damage) for text, damage in await self._db.run(query)]
        if all_versions:
            return cards
        latest: dict[str, StoredHead] = {}
        for card in cards:  # ordered by version: the last one of a name wins
            latest[card.name] = card
        return list(latest.values())

    async def versions(self, tenant: str, name: str) -> tuple[int, ...]:
        """The live versions of one of the tenant's heads, oldest first (empty: none)."""
        check_head_name(name)

        def query(session: Session) -> tuple[int, ...]:
            # The version column only: a card is up to megabytes of JSON.
            only = _live(tenant, name).with_only_columns(HeadRow.version)
            return tuple(session.scalars(only.order_by(HeadRow.version)))

        return await self._db.run(query)

    async def get(self, tenant: str, name: str, version: int = 0) -> StoredHead:
        """The card of one version (0: the latest); NotFound for unknown or another tenant's.

        From the card cache when it is there (kept current by the change feed), so that a blip
        of the database does not stop Predict on heads used recently.
        """
        check_head_name(name)
        # SQLite: a database file removed under the server stops every call, cached or not.
        self._db.check_intact()
        key = (tenant, name, version)
        cached = self._cards.get(key)
        if cached is not None:
            return cached
        generation = self._cards.generation

        def query(session: Session) -> tuple[str, str | None] | None:
            select_ = _live(tenant, name)
            if version:
                select_ = select_.where(HeadRow.version == version)
            row = session.scalars(select_.order_by(HeadRow.version.desc()).limit(1)).first()
            return (row.card_json, row.damage) if row else None

        found = await self._db.run(query)
        if found is None:
            raise _not_found(name, version)
        stored = StoredHead.of(*found)
        self._cards.put(key, stored, generation)
        return stored

    async def delete(self, tenant: str, name: str, version: int = 0) -> None:
        """Deletes one version, or all versions when `version` is 0."""
        check_head_name(name)

        def tombstone(session: Session) -> tuple[int, ...]:
            select_ = _live(tenant, name)
            if version:
                select_ = select_.where(HeadRow.version == version)
            rows = list(session.scalars(select_))
            artifacts: set[str] = set()
            for row in rows:
                # A deleted version keeps only its number (never reused): its card and its
                # artifacts go (a knn head's graph holds the embeddings of its examples).
                row.deleted_at = utc_now()
                row.card_json = ""
                artifacts.update(sha for sha in (row.onnx_sha256, row.card_sha256) if sha)
                row.onnx_sha256 = row.card_sha256 = None
            session.flush()
            delete_unused_blobs(session, artifacts)
            versions = tuple(row.version for row in rows)
            if versions:
                # Every replica drops the versions from its caches and files (this one at once).
                self._changes.announce(
                    session, Change(ChangeKind.HEAD_DELETED, tenant, name, versions)
                )
            return versions

        if not await self._changes.run(tombstone):
            raise _not_found(name, version)

    def apply(self, change: Change) -> None:
        """Drops what a published or deleted version made stale (see `ChangeFeed`)."""
        if change.kind is ChangeKind.HEAD_PUBLISHED:
            self._cards.drop(change.tenant, change.name)
        elif change.kind is ChangeKind.HEAD_DELETED:
            self._cards.drop(change.tenant, change.name, change.versions)
            for number in change.versions:
                self._cache.pop((change.tenant, change.name, number))
                self._files.remove(change.tenant, change.name, number)
        elif change.kind is ChangeKind.TENANT_DELETED:
            self._cards.drop_tenant(change.tenant)
            for key in self._cache.keys():
                if key[0] == change.tenant:
                    self._cache.pop(key)
            self.remove_tenant_files(change.tenant)

    def remove_tenant_files(self, tenant: str) -> None:
        """Removes a deleted tenant's head files from this replica's disk."""
        self._files.remove_tenant(tenant)

    async def reread(self) -> None:
        """Drops cached cards and heads whose versions were deleted or superseded, or whose damage
        mark changed, meanwhile, and the files of tenants deleted meanwhile (changes whose
        notice this replica missed)."""
        await self._remove_deleted_tenants()
        cards = self._cards.items()
        loaded = self._cache.keys()
        names = sorted({(t, n) for (t, n, _), _ in cards} | {(t, n) for t, n, _ in loaded})
        if not names:
            return
        live = await self._db.run(lambda session: _live_versions(session, names))
        stale = [key for key, card in cards if not _still_current(key, card, live)]
        if stale:
            self._cards.drop_keys(stale)
        for tenant, name, number in loaded:
            if number not in live.get((tenant, name), {}):
                self._cache.pop((tenant, name, number))
                self._files.remove(tenant, name, number)

    async def _remove_deleted_tenants(self) -> None:
        on_disk = self._files.tenants()
        if not on_disk:
            return

        def existing(session: Session) -> set[str]:
            return set(session.scalars(select(TenantRow.name).where(TenantRow.name.in_(on_disk))))

        for tenant in sorted(set(on_disk) - await self._db.run(existing)):
            self._files.remove_tenant(tenant)

    async def load(self, tenant: str, name: str, version: int = 0) -> LoadedHead:
        """The loaded head (from the LRU when it is there).

        Raises:
            NotFound: no such head, or it was deleted while this call loaded it.
            DataLoss: its stored files are damaged (the version is marked damaged).
        """
        return await self.load_stored(await self.get(tenant, name, version), version)

    async def load_stored(self, stored: StoredHead, asked_version: int = 0) -> LoadedHead:
        """The loaded head of a version `get` returned (from the LRU when it is there): callers
        check what the card allows before paying for loading it.

        Args:
            stored: What `get` returned.
            asked_version: The version the caller asked `get` for (0: the latest), as a
                NotFound names it.

        Raises:
            NotFound: it was deleted since `get`.
            DataLoss: its stored files are damaged (the version is marked damaged).
        """
        name = stored.name
        key = (stored.tenant, name, stored.version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._read, stored
            )
        except FileNotFoundError:
            loaded = await self._from_database(stored, asked_version, "its files are missing")
        except _Damaged as damaged:
            loaded = await self._from_database(stored, asked_version, damaged.reason)
        if stored.damage is not None:
            log.info("head %s/%s v%d serves again", stored.tenant, name, stored.version)
            await self._mark(stored, None)
        self._cache.put(key, loaded)
        return loaded

    def _read(self, stored: StoredHead) -> LoadedHead:
        return _checked(stored, *self._files.read(stored.tenant, stored.name, stored.version))

    async def _from_database(
        self, stored: StoredHead, asked_version: int, reason: str
    ) -> LoadedHead:
        """The version loaded from the database's copy of its artifacts, written back to the
        local files, which were missing or failed a check (`reason`).

        Raises:
            NotFound: the version was deleted since `get` (DeleteHead writes the tombstone
                before it removes the files).
            DataLoss: the database has no good copy either (the version is marked damaged).
        """
        key = (stored.tenant, stored.name, stored.version)
        copy = await self._db.run(lambda session: _artifacts(session, *key))
        if copy is None:
            raise _not_found(stored.name, asked_version)
        if copy.legacy:  # published before artifacts were stored: the files were the only copy
            raise await self._damaged(stored, reason)
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._heal, stored, copy
            )
        except _Damaged as damaged:
            raise await self._damaged(
                stored, f"{reason}, and its copy in the database {damaged.reason}"
            ) from None
        log.log(
            logging.INFO if reason == "its files are missing" else logging.WARNING,
            "head %s/%s v%d: %s; loaded from the database's copy",
            stored.tenant, stored.name, stored.version, reason,
        )  # fmt: skip
        return loaded

    def _heal(self, stored: StoredHead, copy: _Artifacts) -> LoadedHead:
        """Verifies the database's copy, loads it, and writes it to the local files."""
        if copy.onnx is None or copy.card is None:
            raise _Damaged("is missing")
        if (
            hashlib.sha256(copy.onnx).hexdigest() != copy.onnx_sha256
            or hashlib.sha256(copy.card).hexdigest() != copy.card_sha256
        ):
            raise _Damaged("fails its SHA-256")
        try:
            loaded = _checked(stored, copy.onnx, copy.card)
        except _Damaged as damaged:
            raise _Damaged(f"is damaged too ({damaged.reason})") from None
        try:
            self._files.write(
                stored.tenant, stored.name, stored.version, copy.onnx, copy.card.decode(),
                replace=True,
            )  # fmt: skip
        except (TransferdError, OSError) as error:  # the files are a cache: serve without them
            log.warning("could not cache head %s's files: %s", stored.name, error)
        return loaded

    async def _damaged(self, stored: StoredHead, reason: str) -> DataLoss:
        """Marks the version damaged (kept across restarts) and returns the client's error."""
        log.error(
            "head %s/%s v%d is damaged: %s", stored.tenant, stored.name, stored.version, reason
        )
        await self._mark(stored, reason)
        return DataLoss(
            f"head {shown(stored.name)} version {stored.version} is damaged ({reason}); "
            "an operator must restore it from a backup, or train it again"
        )

    async def _mark(self, stored: StoredHead, damage: str | None) -> None:
        def write(session: Session) -> None:
            session.execute(
                update(HeadRow)
                .where(
                    HeadRow.tenant == stored.tenant,
                    HeadRow.name == stored.name,
                    HeadRow.version == stored.version,
                )
                .values(damage=damage)
            )

        try:
            await self._db.run(write)
        except TransferdError as error:  # the mark is a courtesy; the answer must not wait for it
            log.warning("could not store the health of head %s: %s", stored.name, error)
        # Cached cards carry the mark: read it again. (Other replicas see it at their re-read.)
        self._cards.drop(stored.tenant, stored.name, (stored.version,))


def _checked(stored: StoredHead, onnx: bytes, card_bytes: bytes) -> LoadedHead:
    """The head of `stored` from these bytes, once they pass every check.

    Raises:
        _Damaged: a check fails (why, in words safe to show the tenant).
    """
    try:
        on_disk = HeadCard.from_json(card_bytes)
    except HeadFormatError:
        raise _Damaged("its card file is unreadable") from None
    if on_disk.to_dict() != stored.to_dict():
        raise _Damaged("its card file differs from the registry's")
    damage = onnx_damage(onnx, on_disk)
    if damage is not None:
        raise _Damaged(damage)
    try:
        return LoadedHead.from_bytes(on_disk, onnx)
    except HeadFormatError:
        raise _Damaged("its ONNX file does not load") from None


@dataclass(frozen=True)
class _Artifacts:
    """A live version's artifacts as the database holds them (None: the blob is missing)."""

    onnx_sha256: str | None
    card_sha256: str | None
    onnx: bytes | None
    card: bytes | None

    @property
    def legacy(self) -> bool:
        """Published before artifacts were stored in the database."""
        return self.onnx_sha256 is None or self.card_sha256 is None


def _artifacts(session: Session, tenant: str, name: str, version: int) -> _Artifacts | None:
    """The live version's artifacts; None when the version is not live (deleted, or never)."""
    row = session.scalars(_live(tenant, name).where(HeadRow.version == version)).first()
    if row is None:
        return None
    if row.onnx_sha256 is None or row.card_sha256 is None:
        return _Artifacts(row.onnx_sha256, row.card_sha256, None, None)
    blobs: dict[str, bytes] = {
        sha256: data
        for sha256, data in session.execute(
            select(HeadBlobRow.sha256, HeadBlobRow.data).where(
                HeadBlobRow.sha256.in_([row.onnx_sha256, row.card_sha256])
            )
        )
    }
    return _Artifacts(
        row.onnx_sha256, row.card_sha256, blobs.get(row.onnx_sha256), blobs.get(row.card_sha256)
    )


#: Names per query of the re-read (bound parameters stay well under SQLite's limit).
_NAMES_PER_QUERY = 500


def _live_versions(
    session: Session, names: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[int, str | None]]:
    """For each (tenant, name): its live versions and their damage marks."""
    live: dict[tuple[str, str], dict[int, str | None]] = {}
    for start in range(0, len(names), _NAMES_PER_QUERY):
        chunk = names[start : start + _NAMES_PER_QUERY]
        query = select(HeadRow.tenant, HeadRow.name, HeadRow.version, HeadRow.damage).where(
            HeadRow.deleted_at.is_(None), tuple_(HeadRow.tenant, HeadRow.name).in_(chunk)
        )
        for tenant, name, version, damage in session.execute(query):
            live.setdefault((tenant, name), {})[version] = damage
    return live


def _still_current(
    key: Key, card: StoredHead, live: dict[tuple[str, str], dict[int, str | None]]
) -> bool:
    """Whether a cached card (version 0: the latest) is what the database says now."""
    versions = live.get(key[:2], {})
    number = key[2] or (max(versions) if versions else 0)
    return number == card.version and number in versions and versions[number] == card.damage


def _next_version(session: Session, tenant: str, name: str) -> tuple[int, int, int]:
    """(the next version of `name`, live heads of the tenant, live versions of `name`)."""
    latest = session.scalar(
        select(func.max(HeadRow.version)).where(HeadRow.tenant == tenant, HeadRow.name == name)
    )
    return (int(latest or 0) + 1, *_counts(session, tenant, name))


def put_blob(session: Session, sha256: str | None, data: bytes) -> str:
    """Stores `data` in `head_blobs` unless it is there (write-once); returns its SHA-256.

    Two replicas may store the same bytes at once: the second insert is a no-op, not an error.
    """
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    _lock_blob(session, sha256)
    insert_ = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert_(HeadBlobRow)
        .values(sha256=sha256, data=data, created_at=utc_now())
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    return sha256


def delete_unused_blobs(session: Session, sha256s: set[str]) -> int:
    """Deletes the artifacts of `sha256s` that no head row refers to any more; how many.

    The same bytes may be published again at this moment (a retrained head can be identical):
    each artifact's lock (`_lock_blob`) is taken before its references are counted, so a
    publish storing it either committed first (and is counted) or waits and stores it anew.
    """
    for sha256 in sorted(sha256s):  # one order everywhere: no deadlock between two deleters
        _lock_blob(session, sha256)
    used = set(
        session.scalars(select(HeadRow.onnx_sha256).where(HeadRow.onnx_sha256.in_(sha256s)))
    ) | set(session.scalars(select(HeadRow.card_sha256).where(HeadRow.card_sha256.in_(sha256s))))
    unused = sha256s - used
    if unused:
        session.execute(delete(HeadBlobRow).where(HeadBlobRow.sha256.in_(unused)))
    return len(unused)


def _lock_blob(session: Session, sha256: str) -> None:
    """PostgreSQL: a lock on one artifact until the transaction ends (storing it and deleting
    it take turns). SQLite: nothing (its transactions take turns already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(int(sha256[:15], 16))))


def _counts(session: Session, tenant: str, name: str) -> tuple[int, int]:
    """(live heads of the tenant, live versions of `name`)."""
    live = (HeadRow.tenant == tenant, HeadRow.deleted_at.is_(None))
    heads = session.scalar(select(func.count(func.distinct(HeadRow.name))).where(*live))
    versions = session.scalar(
        select(func.count()).select_from(HeadRow).where(*live, HeadRow.name == name)
    )
    return int(heads or 0), int(versions or 0)
