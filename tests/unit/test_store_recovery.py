"""The store on a real SQLite database and real files: recovery never deletes a head, damage is
marked and kept, quotas, names, a database file removed under the server, old databases open."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from heads import TrainedHead, train_head
from service.errors import DataLoss, InvalidArgument, ResourceExhausted, Unavailable
from service.store.database import DB_FILE, Database
from service.store.disk_errors import is_disk_full
from service.store.head_cache import HeadCache, estimated_bytes
from service.store.head_files import HeadFiles
from service.store.recovery import StoreNeedsRepair, check_before_open
from service.store.registry import HeadQuotas, HeadRegistry, check_head_name
from service.store.repair import repair
from service.tenancy.directory import check_tenant_name
from tests.support.heads_db import damage_database_copy, forget_database_copy

FINGERPRINT = "f" * 64


@pytest.fixture(scope="module")
def trained() -> TrainedHead:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(3, 1, (20, 8))]).astype(np.float32)
    return train_head("logistic_regression", x, ["a"] * 20 + ["b"] * 20)


def _open(data_dir: Path, **kwargs: object) -> tuple[HeadRegistry, HeadFiles, Database]:
    check_before_open(data_dir)
    db = Database(data_dir)
    files = HeadFiles(data_dir)
    registry = HeadRegistry(db, files, 8, ThreadPoolExecutor(2), **kwargs)  # type: ignore[arg-type]
    return registry, files, db


def _publish(registry: HeadRegistry, tenant: str, name: str, trained: TrainedHead) -> int:
    return asyncio.run(registry.publish(tenant, name, trained, "bb", FINGERPRINT)).version


def test_names_with_a_trailing_newline_are_refused() -> None:
    for bad in ("model\n", "model\r\n", ""):
        with pytest.raises(InvalidArgument):
            check_head_name(bad)
    for bad in ("acme\n", "Acme"):
        with pytest.raises(InvalidArgument):
            check_tenant_name(bad)
    check_head_name("model.v2_x-1")
    check_tenant_name("acme-1")


def test_a_lost_database_is_refused_and_repair_brings_every_head_back(
    tmp_path: Path, trained: TrainedHead
) -> None:
    registry, files, db = _open(tmp_path)
    for name in ("a", "b"):
        _publish(registry, "acme", name, trained)
    _publish(registry, "globex", "a", trained)
    db.close()
    (tmp_path / DB_FILE).unlink()

    with pytest.raises(StoreNeedsRepair, match="transferd repair"):
        check_before_open(tmp_path)
    assert not (tmp_path / DB_FILE).exists()  # nothing created beside the heads
    # An empty database (e.g. created by hand) is refused too, and the sweep touches nothing.
    Database(tmp_path).close()
    registry, files, db = _open(tmp_path)
    with pytest.raises(StoreNeedsRepair):
        registry.sweep_unpublished()
    db.close()
    assert len(files.versions()) == 3

    report = repair(tmp_path)
    assert sorted(report.restored) == ["acme/a/1", "acme/b/1", "globex/a/1"]
    assert sorted(report.tenants_created) == ["acme", "globex"]
    assert report.tenants_without_keys == ["acme", "globex"]
    again = repair(tmp_path)  # idempotent
    assert (again.restored, again.unquarantined, again.tenants_created) == ([], [], [])

    registry, files, db = _open(tmp_path)
    assert registry.sweep_unpublished().quarantined == []
    listed = asyncio.run(registry.list("acme"))
    assert [c.name for c in listed] == ["a", "b"]
    probe = np.array([[0.0] * 8, [3.0] * 8], np.float32)  # each class's centre
    restored = asyncio.run(registry.load("globex", "a")).predict(probe)
    assert [p.label for p in restored] == ["a", "b"]
    assert _publish(registry, "acme", "a", trained) == 2  # numbering goes on
    db.close()


def test_orphans_are_quarantined_and_repair_brings_them_back(
    tmp_path: Path, trained: TrainedHead
) -> None:
    registry, files, db = _open(tmp_path)
    _publish(registry, "acme", "keep", trained)
    _publish(registry, "acme", "lost", trained)
    _publish(registry, "acme", "gone", trained)
    asyncio.run(registry.delete("acme", "gone"))
    # What a crash between the tombstone and the removal leaves: a deleted version's folder.
    shutil.copytree(files.folder("acme", "keep", 1), files.folder("acme", "gone", 1))
    db.call(lambda s: s.execute(text("DELETE FROM heads WHERE name='lost'")))
    db.close()

    registry, files, db = _open(tmp_path)
    report = registry.sweep_unpublished()
    assert [p.parts[-3:] for p in report.quarantined] == [("acme", "lost", "1")]
    assert (report.quarantined[0] / "head.onnx").exists()
    assert report.deleted_removed == [files.folder("acme", "gone", 1)]
    assert not files.folder("acme", "lost", 1).exists()
    db.close()

    report = repair(tmp_path)
    assert report.unquarantined == ["acme/lost/1"]
    assert files.quarantined() == []
    registry, files, db = _open(tmp_path)
    assert sorted(c.name for c in asyncio.run(registry.list("acme"))) == ["keep", "lost"]
    db.close()


def test_damage_is_data_loss_marked_and_kept_across_restarts(
    tmp_path: Path, trained: TrainedHead
) -> None:
    """Damage needs the database's copy damaged too (else the files are healed from it)."""
    registry, files, db = _open(tmp_path)
    _publish(registry, "acme", "h", trained)
    damage_database_copy(db, "acme", "h", 1)
    onnx = files.folder("acme", "h", 1) / "head.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(good[:-10] + b"\0" * 10)
    with pytest.raises(DataLoss, match=r"head 'h' version 1 is damaged \(its ONNX file fails"):
        asyncio.run(registry.load("acme", "h"))
    db.close()

    registry, files, db = _open(tmp_path)  # a restart: the mark was stored
    (listed,) = asyncio.run(registry.list("acme"))
    copy_damaged = "and its copy in the database fails its SHA-256"
    assert listed.damage == f"its ONNX file fails the card's checksum, {copy_damaged}"
    (files.folder("acme", "h", 1) / "card.json").write_text("{not json")
    with pytest.raises(DataLoss, match="card file is unreadable"):
        asyncio.run(registry.load("acme", "h"))
    damage = asyncio.run(registry.get("acme", "h")).damage
    assert damage == f"its card file is unreadable, {copy_damaged}"
    shutil.rmtree(files.folder("acme", "h", 1))
    with pytest.raises(DataLoss, match="files are missing"):  # row live, files gone: lost
        asyncio.run(registry.load("acme", "h"))
    db.close()


def test_lost_files_are_healed_from_the_database_except_rows_of_earlier_releases(
    tmp_path: Path, trained: TrainedHead
) -> None:
    """Files removed: the database's copy brings them back, byte for byte, and the version
    serves. A row of an earlier release (no copy in the database) is damaged, as before."""
    registry, files, db = _open(tmp_path)
    _publish(registry, "acme", "h", trained)
    _publish(registry, "acme", "old", trained)
    folder = files.folder("acme", "h", 1)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    shutil.rmtree(folder)
    assert asyncio.run(registry.load("acme", "h")).card.version == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    forget_database_copy(db, "acme", "old", 1)
    shutil.rmtree(files.folder("acme", "old", 1))
    with pytest.raises(DataLoss, match=r"\(its files are missing\)"):
        asyncio.run(registry.load("acme", "old"))
    db.close()


def test_quotas_count_live_versions(tmp_path: Path, trained: TrainedHead) -> None:
    registry, _, db = _open(
        tmp_path, quotas=HeadQuotas(max_heads_per_tenant=2, max_versions_per_head=2)
    )
    _publish(registry, "acme", "a", trained)
    _publish(registry, "acme", "a", trained)
    with pytest.raises(ResourceExhausted, match="head 'a' has 2 versions, the most allowed is 2"):
        asyncio.run(registry.check_quota("acme", "a"))
    with pytest.raises(ResourceExhausted, match="versions"):  # publish checks again
        _publish(registry, "acme", "a", trained)
    asyncio.run(registry.delete("acme", "a", 1))
    assert _publish(registry, "acme", "a", trained) == 3  # a deleted version frees its place
    _publish(registry, "acme", "b", trained)
    with pytest.raises(ResourceExhausted, match="this tenant has 2 heads, the most allowed is 2"):
        asyncio.run(registry.check_quota("acme", "c"))
    asyncio.run(registry.check_quota("globex", "c"))  # per tenant
    db.close()


def test_a_removed_or_replaced_database_file_is_unavailable(
    tmp_path: Path, trained: TrainedHead
) -> None:
    for how in ("removed", "replaced"):
        data = tmp_path / how
        registry, _, db = _open(data)
        _publish(registry, "acme", "h", trained)
        if how == "removed":
            (data / DB_FILE).unlink()
        else:
            (data / DB_FILE).rename(data / "old.db")
            shutil.copy(data / "old.db", data / DB_FILE)
        assert not db.intact()
        with pytest.raises(Unavailable, match=f"was {how} while the server was running"):
            asyncio.run(registry.list("acme"))
        with pytest.raises(Unavailable):
            _publish(registry, "acme", "h", trained)
        assert not (HeadFiles(data).folder("acme", "h", 2)).exists()  # nothing published
        db.close()


def test_disk_full_errors_are_recognised() -> None:
    import errno

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(OSError(errno.EACCES, "denied"))


def test_the_head_cache_keeps_within_its_byte_budget(trained: TrainedHead) -> None:
    from heads import LoadedHead

    card = trained.to_card(
        tenant="acme", name="h", version=1, backbone="bb", backbone_fingerprint=FINGERPRINT
    )
    head = LoadedHead.from_bytes(card, trained.onnx_bytes)
    size = estimated_bytes(head)
    cache = HeadCache(max_heads=100, max_bytes=int(size * 2.5))
    for version in range(1, 6):
        cache.put(("acme", "h", version), head)
        assert cache.bytes <= size * 2.5
    assert len(cache) == 2
    assert cache.get(("acme", "h", 5)) is head and cache.get(("acme", "h", 1)) is None
    tiny = HeadCache(max_heads=100, max_bytes=size - 1)
    tiny.put(("acme", "h", 1), head)  # larger than the whole budget: served, not cached
    assert (len(tiny), tiny.bytes) == (0, 0)
