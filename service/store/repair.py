"""`transferd repair`: rebuilds head rows (and their tenants) from the cards on disk.

Run it with the server stopped. It never deletes anything and is idempotent:

1. every live version folder with a valid card and no row (live or tombstone) gets its row back,
   and its tenant when the database does not know it;
2. every quarantined folder with a valid card whose version has no row and no live folder is
   moved back and gets its row;
3. everything else is left where it is and listed (unreadable cards, versions that exist twice).

A restored head whose ONNX file fails its card's checksum is restored marked damaged, so that
GetHead shows it and Predict answers DATA_LOSS. API keys are only stored as hashes and cannot
be recovered: the report names the tenants that need new keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from heads import HeadCard, utc_now
from service.store.database import Database, set_aside_stale_wal
from service.store.head_files import (
    CHECKSUM_DAMAGE,
    ONNX_FILE,
    HeadFiles,
    VersionFolder,
    new_stamp,
    onnx_damage,
)
from service.store.recovery import head_rows
from service.store.registry import HEAD_NAME
from service.store.schema import ApiKeyRow, HeadRow, TenantRow
from service.tenancy.directory import TENANT_NAME

MISSING_DAMAGE = "its ONNX file is missing"


@dataclass
class RepairReport:
    """What one repair run did and left alone."""

    restored: list[str] = field(default_factory=list)
    unquarantined: list[str] = field(default_factory=list)
    tenants_created: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tenants_without_keys: list[str] = field(default_factory=list)
    stale_wal: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as the command prints it."""
        out = [f"set aside a stale SQLite file: {p}" for p in self.stale_wal]
        out += [f"restored row: {h}" for h in self.restored]
        out += [f"brought back from quarantine: {h}" for h in self.unquarantined]
        out += [f"created tenant: {t}" for t in self.tenants_created]
        out += [f"marked damaged ({CHECKSUM_DAMAGE} or is missing): {h}" for h in self.damaged]
        out += [f"left alone: {s}" for s in self.skipped]
        if not (self.restored or self.unquarantined or self.tenants_created):
            out.append("nothing to repair: every head with a valid card has its row")
        if self.tenants_without_keys:
            out.append(
                "API keys cannot be recovered (only their hashes were stored); create new keys "
                "(TenantService.CreateApiKey) for: " + ", ".join(self.tenants_without_keys)
            )
        return out


def _damage(found: Path, card: HeadCard) -> str | None:
    """Why the folder's ONNX file cannot serve, or None when it matches the card."""
    try:
        onnx = (found / ONNX_FILE).read_bytes()
    except FileNotFoundError:
        return MISSING_DAMAGE
    return onnx_damage(onnx, card)


def _label(found: VersionFolder) -> str:
    return f"{found.tenant}/{found.name}/{found.version}"


class _Repairer:
    def __init__(self, db: Database, files: HeadFiles, report: RepairReport) -> None:
        self._db = db
        self._files = files
        self._report = report
        # Every version that has a row, live or tombstone.
        self._rows: set[tuple[str, str, int]] = set(db.call(head_rows))

    def _valid(self, found: VersionFolder) -> HeadCard | None:
        card = found.card()
        if card is None:
            self._report.skipped.append(f"{found.path} (no valid card naming this folder)")
            return None
        if not (TENANT_NAME.fullmatch(card.tenant) and HEAD_NAME.fullmatch(card.name)):
            self._report.skipped.append(f"{found.path} (tenant or head name not allowed)")
            return None
        return card

    def _insert(self, card: HeadCard, damage: str | None) -> None:
        def insert(session: Session) -> bool:
            created = False
            if session.get(TenantRow, card.tenant) is None:
                session.add(TenantRow(name=card.tenant, created_at=utc_now()))
                created = True
            session.add(
                HeadRow(
                    tenant=card.tenant,
                    name=card.name,
                    version=card.version,
                    card_json=card.to_json(),
                    created_at=datetime.fromisoformat(card.created_at),
                    damage=damage,
                )  # fmt: skip
            )
            return created

        if self._db.call(insert):
            self._report.tenants_created.append(card.tenant)
        self._rows.add((card.tenant, card.name, card.version))
        if damage is not None:
            self._report.damaged.append(f"{card.tenant}/{card.name}/{card.version}")

    def live(self) -> None:
        for found in self._files.versions():
            if found.key in self._rows:
                continue  # published (or deleted: a tombstone is the tenant's decision)
            card = self._valid(found)
            if card is not None:
                self._insert(card, _damage(found.path, card))
                self._report.restored.append(_label(found))

    def quarantined(self) -> None:
        for found in self._files.quarantined():
            card = self._valid(found)
            if card is None:
                continue
            key = found.key
            assert key is not None, "a valid card names its own, numbered, version folder"
            if key in self._rows or self._files.folder(*key).exists():
                self._report.skipped.append(
                    f"{found.path} (version {found.version} of {found.tenant}/{found.name} "
                    "exists already)"
                )
                continue
            # Folder first, row second, as a publish: a crash between leaves a live folder
            # without a row, which the next repair restores.
            placed = self._files.unquarantine(found)
            self._insert(card, _damage(placed, card))
            self._report.unquarantined.append(_label(found))

    def tenants_without_keys(self) -> list[str]:
        def query(session: Session) -> list[str]:
            with_keys = select(ApiKeyRow.tenant).where(ApiKeyRow.revoked_at.is_(None))
            rows = session.scalars(select(TenantRow.name).where(TenantRow.name.not_in(with_keys)))
            return sorted(rows)

        return self._db.call(query)


def repair(data_dir: Path) -> RepairReport:
    """Rebuilds missing head rows from cards and restores quarantined heads (see module doc)."""
    report = RepairReport(stale_wal=set_aside_stale_wal(data_dir, new_stamp()))
    db = Database(data_dir)
    try:
        repairer = _Repairer(db, HeadFiles(data_dir), report)
        repairer.live()
        repairer.quarantined()
        report.tenants_without_keys = repairer.tenants_without_keys()
    finally:
        db.close()
    return report
