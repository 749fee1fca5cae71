"""DeleteTenant: every key, job and head of a tenant goes, on every replica, in one transaction.

The transaction locks the tenant's row, then deletes in an order that closes every race with a
job publishing a head meanwhile: its jobs first (a publish holds its job's row until it commits,
so the deletion waits for it, and a publish that comes later finds its job gone and publishes
nothing), then its heads, with the artifacts no other head uses (`delete_unused_blobs`), then its keys and the tenant.
`TENANT_DELETED` tells every replica to drop the tenant's keys, cached heads and head files.
This replica also stops the tenant's jobs it runs and waits for them, so that the answer comes
once nothing of the tenant can be served here; other replicas stop theirs at their next
heartbeat (the rows are gone, so their leases are).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.errors import NotFound, shown
from service.jobs.manager import JobManager
from service.jobs.store import ACTIVE
from service.store.changes import Change, ChangeFeed, ChangeKind
from service.store.database import Database
from service.store.registry import HeadRegistry, delete_unused_blobs
from service.store.schema import ApiKeyRow, HeadRow, JobRow, TenantRow
from service.tenancy.directory import check_tenant_name


@dataclass(frozen=True)
class DeletedTenant:
    """What a deletion removed."""

    tenant: str
    key_ids: tuple[str, ...]
    active_jobs: int  # queued or running when deleted
    head_versions: int  # live versions (tombstones of versions deleted before are not counted)


def purge(session: Session, tenant: str) -> DeletedTenant | None:
    """Deletes every row of `tenant` (None: there is no such tenant). In the caller's
    transaction; the order is the one the module docstring explains."""
    locked = select(TenantRow).where(TenantRow.name == tenant).with_for_update()
    if session.scalars(locked).first() is None:
        return None
    jobs = JobRow.tenant == tenant
    active = session.scalar(
        select(func.count()).select_from(JobRow).where(jobs, JobRow.state.in_(ACTIVE))
    )
    session.execute(delete(JobRow).where(jobs))
    heads = session.execute(
        select(HeadRow.deleted_at, HeadRow.onnx_sha256, HeadRow.card_sha256).where(
            HeadRow.tenant == tenant
        )
    ).all()
    session.execute(delete(HeadRow).where(HeadRow.tenant == tenant))
    delete_unused_blobs(
        session, {sha for _, onnx, card in heads for sha in (onnx, card) if sha is not None}
    )
    key_ids = tuple(session.scalars(select(ApiKeyRow.key_id).where(ApiKeyRow.tenant == tenant)))
    session.execute(delete(ApiKeyRow).where(ApiKeyRow.tenant == tenant))
    session.execute(delete(TenantRow).where(TenantRow.name == tenant))
    live_versions = sum(1 for deleted_at, _, _ in heads if deleted_at is None)
    return DeletedTenant(tenant, key_ids, active or 0, live_versions)


class TenantRemover:
    """Deletes tenants (see the module docstring)."""

    def __init__(
        self, db: Database, changes: ChangeFeed, jobs: JobManager, registry: HeadRegistry
    ) -> None:
        self._db = db
        self._changes = changes
        self._jobs = jobs
        self._registry = registry

    async def delete(self, tenant: str) -> DeletedTenant:
        """Deletes `tenant` everywhere; answers once nothing of it can be served here.

        Raises:
            InvalidArgument: not a tenant name.
            NotFound: no such tenant.
        """
        check_tenant_name(tenant)

        def transaction(session: Session) -> DeletedTenant | None:
            deleted = purge(session, tenant)
            if deleted is not None:
                self._changes.announce(session, Change(ChangeKind.TENANT_DELETED, tenant=tenant))
            return deleted

        deleted = await self._changes.run(transaction)
        if deleted is None:
            raise NotFound(f"tenant {shown(tenant)} does not exist")
        await self._jobs.stop_tenant(tenant)
        # Once more, now that none of its jobs runs here: a publish that was writing its folder
        # when the notice removed the tenant's files has taken its folder back, not the parents.
        self._registry.remove_tenant_files(tenant)
        await self._db.drop_log_copies()
        return deleted
