"""Start-up recovery of the store, which never destroys a head.

- The database is new (missing, or without a single head row) while head folders with valid
  cards exist: the database was lost, not the heads. Serving would show every tenant an empty
  service and the sweep would see every head as a crash leftover, so the server refuses to start
  and says how to restore the database or re-import the heads (`transferd repair`).
- Otherwise the sweep removes staging leftovers (never renamed into place, so never published)
  and the folders of versions whose row is a tombstone (a delete that a crash interrupted), and
  moves every other folder without a live row to `heads/.quarantine/<stamp>/`, with a warning.
  A version folder is complete by construction (one atomic rename), so one without a row may be
  all that is left of a published head; a folder whose card is unreadable is quarantined too,
  since deleting it would destroy what an investigation needs, and it only costs disk space.

With PostgreSQL the data directory is only this replica's cache of head files (the database
holds every artifact): there is nothing to refuse or quarantine. Staging leftovers and the
cached folders of versions without a live row (deleted, on any replica) are removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import metrics
from service.store.database import DB_FILE, Database, set_aside_stale_wal
from service.store.head_files import HeadFiles, new_stamp
from service.store.schema import HeadRow

log = logging.getLogger(__name__)


class StoreNeedsRepair(Exception):
    """The database does not know heads that exist on disk; serving would hide or lose them."""


def needs_repair_message(data_dir: Path, heads: int) -> str:
    """What the operator reads when the server refuses to start."""
    return (
        f"refusing to start: the database {data_dir / DB_FILE} is new or empty, but "
        f"{data_dir / 'heads'} holds {heads} head version(s) with valid cards. The database was "
        "probably lost. Either stop here and restore the database file from a backup (then "
        "start again), or re-import the heads from their cards with "
        f"`transferd repair --data-dir {data_dir}` (tenants come back; API keys cannot, so "
        "create new keys afterwards)."
    )


def count_valid_heads(files: HeadFiles) -> int:
    """Version folders of the live tree whose card is valid and names the folder."""
    return sum(1 for found in files.versions() if found.card() is not None)


def check_before_open(data_dir: Path) -> None:
    """Before the database is opened: a missing database file with heads on disk is refused.

    Also sets aside a stale -wal/-shm of a missing database file, which SQLite would otherwise
    replay into the new file.

    Raises:
        StoreNeedsRepair: the database file is missing while head folders have valid cards.
    """
    if (data_dir / DB_FILE).exists():
        return
    for moved in set_aside_stale_wal(data_dir, new_stamp()):
        log.warning("the database file is missing; set its stale %s aside", moved.name)
    heads = count_valid_heads(HeadFiles(data_dir))
    if heads:
        raise StoreNeedsRepair(needs_repair_message(data_dir, heads))


def head_rows(session: Session) -> dict[tuple[str, str, int], bool]:
    """Every head row, live or tombstone: (tenant, name, version) -> deleted."""
    query = select(HeadRow.tenant, HeadRow.name, HeadRow.version, HeadRow.deleted_at)
    return {(t, n, v): deleted is not None for t, n, v, deleted in session.execute(query)}


@dataclass
class SweepReport:
    """What the start-up sweep did."""

    staging_removed: list[Path] = field(default_factory=list)
    deleted_removed: list[Path] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)
    quarantine_total: int = 0


def drop_stale_cache(db: Database, files: HeadFiles) -> SweepReport:
    """PostgreSQL: removes staging leftovers and cached folders without a live row."""
    rows = db.call(head_rows)
    report = SweepReport(staging_removed=files.remove_staging())
    for found in files.versions():
        if found.key is None or rows.get(found.key) is not False:
            files.remove_path(found.path)
            report.deleted_removed.append(found.path)
    if report.deleted_removed:
        log.info("removed %d cached head folders of deleted versions", len(report.deleted_removed))
    return report


def recover_at_start_up(db: Database, files: HeadFiles) -> SweepReport:
    """Refuses a new database beside existing heads; otherwise sweeps (see the module doc).
    PostgreSQL: only drops what the cache should not hold (`drop_stale_cache`).

    Raises:
        StoreNeedsRepair: the database has no head row while head folders have valid cards.
    """
    if db.is_postgres:
        return drop_stale_cache(db, files)
    rows = db.call(head_rows)
    if not rows:
        heads = count_valid_heads(files)
        if heads:
            raise StoreNeedsRepair(needs_repair_message(db.data_dir, heads))
    report = SweepReport(staging_removed=files.remove_staging())
    stamp = new_stamp()
    for found in files.versions():
        key = found.key
        deleted = rows.get(key) if key is not None else None
        if deleted is False:
            continue  # published and live
        if deleted is True and key is not None:
            # The tenant deleted it; the crash came between the tombstone and the removal.
            files.remove(*key)
            report.deleted_removed.append(found.path)
            continue
        report.quarantined.append(files.quarantine(found.path, stamp))
    report.quarantine_total = len(files.quarantined())
    metrics.HEADS_QUARANTINED.set(report.quarantine_total)
    if report.staging_removed:
        log.info("removed %d unfinished staging folders", len(report.staging_removed))
    if report.deleted_removed:
        log.info("removed %d folders of deleted head versions", len(report.deleted_removed))
    if report.quarantined:
        log.warning(
            "quarantined %d head folders that have no database row (moved, not deleted) under "
            "%s; `transferd repair` brings back those with valid cards",
            len(report.quarantined),
            files.quarantine_root / stamp,
        )
    elif report.quarantine_total:
        log.warning(
            "%d head folders wait in quarantine under %s (`transferd repair` restores them)",
            report.quarantine_total,
            files.quarantine_root,
        )
    return report
