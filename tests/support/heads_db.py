"""Damaging what the database holds of a head, as a disk fault or a bad restore would."""

from __future__ import annotations

from sqlalchemy import select, update

from service.store.database import Database
from service.store.schema import HeadBlobRow, HeadRow


def damage_database_copy(db: Database, tenant: str, name: str, version: int) -> None:
    """Flips the last byte of the version's ONNX bytes in `head_blobs` (same length)."""

    def damage(session) -> None:  # type: ignore[no-untyped-def]
        sha256 = session.scalar(
            select(HeadRow.onnx_sha256).where(
                HeadRow.tenant == tenant, HeadRow.name == name, HeadRow.version == version
            )
        )
        assert sha256 is not None, "the version has no copy in the database"
        data = session.scalar(select(HeadBlobRow.data).where(HeadBlobRow.sha256 == sha256))
        session.execute(
            update(HeadBlobRow)
            .where(HeadBlobRow.sha256 == sha256)
            .values(data=data[:-1] + bytes([data[-1] ^ 0xFF]))
        )

    db.call(damage)


def forget_database_copy(db: Database, tenant: str, name: str, version: int) -> None:
    """Makes the version's row one of an earlier release: no artifacts in the database."""
    db.call(
        lambda session: session.execute(
            update(HeadRow)
            .where(HeadRow.tenant == tenant, HeadRow.name == name, HeadRow.version == version)
            .values(onnx_sha256=None, card_sha256=None)
        )
    )
