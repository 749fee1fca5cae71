"""The head registry: tenant-scoped versions of heads, published atomically, loaded through an LRU.

Every method takes the tenant from the caller's key: a head of another tenant is simply not
found, exactly like one that never existed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from concurrent.futures import Executor

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from heads import HeadCard, HeadFormatError, LoadedHead, TrainedHead
from service import metrics
from service.errors import InvalidArgument, NotFound
from service.store.database import Database, utcnow
from service.store.head_files import HeadFiles
from service.store.schema import HeadRow

log = logging.getLogger(__name__)

HEAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_head_name(name: str, field: str = "head") -> None:
    if not HEAD_NAME.match(name):
        raise InvalidArgument(
            field, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def _live(tenant: str, name: str | None = None) -> Select[tuple[HeadRow]]:
    """Published, not deleted versions of a tenant's heads (of one name when given)."""
    query = select(HeadRow).where(HeadRow.tenant == tenant, HeadRow.deleted_at.is_(None))
    return query if name is None else query.where(HeadRow.name == name)


class HeadRegistry:
    """Publishes, lists, finds, deletes and loads heads.

    Args:
        db: Metadata database (the source of truth for what is published).
        files: Where head artifacts live.
        cache_size: Loaded heads kept in memory (LRU).
        executor: Where ONNX sessions are built (CPU work).
    """

    def __init__(self, db: Database, files: HeadFiles, cache_size: int, executor: Executor) -> None:
        self._db = db
        self._files = files
        self._cache: OrderedDict[tuple[str, str, int], LoadedHead] = OrderedDict()
        self._cache_size = cache_size
        self._executor = executor
        # Serialises publishing in this process: the next version number and its folder are
        # chosen together.
        self._publish_lock = asyncio.Lock()

    def sweep_unpublished(self) -> None:
        """At start-up: removes artifact folders a crash left without a database row."""

        def published(session: Session) -> set[tuple[str, str, int]]:
            live = select(HeadRow.tenant, HeadRow.name, HeadRow.version).where(
                HeadRow.deleted_at.is_(None)
            )
            return {(t, n, v) for t, n, v in session.execute(live)}

        removed = self._files.sweep(self._db.call(published))
        if removed:
            log.warning("removed %d unpublished head folders left by a crash", len(removed))

    async def publish(
        self, tenant: str, name: str, trained: TrainedHead, backbone: str, fingerprint: str
    ) -> HeadCard:
        """Publishes `trained` as the next version of `name`: files first, then the row."""
        async with self._publish_lock:

            def next_version(session: Session) -> int:
                latest = session.scalar(
                    select(func.max(HeadRow.version)).where(
                        HeadRow.tenant == tenant, HeadRow.name == name
                    )
                )
                return int(latest or 0) + 1

            version = await self._db.run(next_version)
            card = trained.to_card(
                tenant=tenant, name=name, version=version,
                backbone=backbone, backbone_fingerprint=fingerprint,
            )  # fmt: skip
            card_json = card.to_json()
            await asyncio.get_running_loop().run_in_executor(
                self._executor,
                self._files.write,
                tenant,
                name,
                version,
                trained.onnx_bytes,
                card_json,
            )

            def insert(session: Session) -> None:
                session.add(
                    HeadRow(
                        tenant=tenant,
                        name=name,
                        version=version,
                        card_json=card_json,
                        created_at=utcnow(),
                    )  # fmt: skip
                )

            await self._db.run(insert)
        return card

    async def list(self, tenant: str, all_versions: bool = False) -> list[HeadCard]:
        def query(session: Session) -> list[str]:
            rows = session.scalars(_live(tenant).order_by(HeadRow.name, HeadRow.version))
            return [row.card_json for row in rows]

        cards = [HeadCard.from_json(text) for text in await self._db.run(query)]
        if all_versions:
            return cards
        latest: dict[str, HeadCard] = {}
        for card in cards:  # ordered by version: the last one of a name wins
            latest[card.name] = card
        return list(latest.values())

    async def get(self, tenant: str, name: str, version: int = 0) -> HeadCard:
        """The card of one version (0: the latest); NotFound for unknown or another tenant's."""
        check_head_name(name)

        def query(session: Session) -> str | None:
            select_ = _live(tenant, name)
            if version:
                select_ = select_.where(HeadRow.version == version)
            row = session.scalars(select_.order_by(HeadRow.version.desc()).limit(1)).first()
            return row.card_json if row else None

        found = await self._db.run(query)
        if found is None:
            which = f" version {version}" if version else ""
            raise NotFound(f"head '{name}'{which} not found")
        return HeadCard.from_json(found)

    async def delete(self, tenant: str, name: str, version: int = 0) -> None:
        """Deletes one version, or all versions when `version` is 0."""
        check_head_name(name)

        def tombstone(session: Session) -> list[int]:
            select_ = _live(tenant, name)
            if version:
                select_ = select_.where(HeadRow.version == version)
            rows = list(session.scalars(select_))
            for row in rows:
                row.deleted_at = utcnow()
            return [row.version for row in rows]

        deleted = await self._db.run(tombstone)
        if not deleted:
            which = f" version {version}" if version else ""
            raise NotFound(f"head '{name}'{which} not found")
        for number in deleted:
            self._cache.pop((tenant, name, number), None)
            self._files.remove(tenant, name, number)
        metrics.HEADS_CACHED.set(len(self._cache))

    async def load(self, tenant: str, name: str, version: int = 0) -> LoadedHead:
        """The loaded head (from the LRU when it is there)."""
        card = await self.get(tenant, name, version)
        key = (tenant, name, card.version)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        loaded = await asyncio.get_running_loop().run_in_executor(self._executor, self._read, card)
        self._cache[key] = loaded
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        metrics.HEADS_CACHED.set(len(self._cache))
        return loaded

    def _read(self, card: HeadCard) -> LoadedHead:
        onnx, card_json = self._files.read(card.tenant, card.name, card.version)
        if HeadCard.from_json(card_json) != card:
            raise HeadFormatError(
                f"card on disk differs from the registry for {card.name} v{card.version}"
            )
        return LoadedHead.from_bytes(card, onnx)
