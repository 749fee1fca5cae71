"""The head registry on a real database of each kind and real files: versions, isolation, crash
safety, artifacts healed from the database."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from heads import TrainedHead, train_head
from service.errors import DataLoss, NotFound
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.registry import HeadRegistry
from tests.support.heads_db import damage_database_copy
from tests.support.postgres import database_url

__all__ = ["database_url"]  # the fixture, used by name

FINGERPRINT = "f" * 64


@pytest.fixture(scope="module")
def trained() -> TrainedHead:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(3, 1, (20, 8))]).astype(np.float32)
    return train_head("logistic_regression", x, ["a"] * 20 + ["b"] * 20)


def _registry(data_dir: Path, url: str | None = None) -> tuple[HeadRegistry, HeadFiles, Database]:
    db = Database(data_dir, url)
    files = HeadFiles(data_dir)
    return HeadRegistry(db, files, cache_size=2, executor=ThreadPoolExecutor(2)), files, db


def test_versions_latest_and_tenant_isolation(
    tmp_path: Path, trained: TrainedHead, database_url: str
) -> None:
    registry, _, db = _registry(tmp_path, database_url)

    async def scenario() -> None:
        one = await registry.publish("acme", "h", trained, "bb", FINGERPRINT)
        two = await registry.publish("acme", "h", trained, "bb", FINGERPRINT)
        assert (one.version, two.version) == (1, 2)
        assert (await registry.get("acme", "h")).version == 2
        assert (await registry.get("acme", "h", 1)).version == 1
        with pytest.raises(NotFound):
            await registry.get("globex", "h")
        with pytest.raises(NotFound):
            await registry.delete("globex", "h")
        loaded = await registry.load("acme", "h")
        # One probe at each class's centre (0 and 3 in every dimension).
        probe = np.array([[0.0] * 8, [3.0] * 8], np.float32)
        assert [p.label for p in loaded.predict(probe)] == ["a", "b"]
        await registry.delete("acme", "h", 2)
        assert (await registry.get("acme", "h")).version == 1
        # A deleted version number is never reused.
        assert (await registry.publish("acme", "h", trained, "bb", FINGERPRINT)).version == 3

    asyncio.run(scenario())
    db.close()


def test_a_crash_between_files_and_row_leaves_nothing_visible(
    tmp_path: Path, trained: TrainedHead
) -> None:
    registry, files, db = _registry(tmp_path)
    asyncio.run(registry.publish("acme", "h", trained, "bb", FINGERPRINT))
    # What a crash can leave: a half-written staging folder, and a complete folder of version 2
    # whose database row was never written.
    (files.root / ".staging" / "dead").mkdir()
    (files.root / ".staging" / "dead" / "head.onnx").write_bytes(b"half")
    files.write("acme", "h", 2, b"orphan", "{}")
    db.close()

    registry, files, db = _registry(tmp_path)  # a restart
    report = registry.sweep_unpublished()
    assert not files.folder("acme", "h", 2).exists()
    assert list((files.root / ".staging").iterdir()) == []
    # Moved aside, never deleted: a folder without a row may be all that is left of a head.
    assert len(report.quarantined) == 1
    assert (report.quarantined[0] / "head.onnx").read_bytes() == b"orphan"

    async def after_restart() -> None:
        assert [c.version for c in await registry.list("acme", all_versions=True)] == [1]
        assert (await registry.publish("acme", "h", trained, "bb", FINGERPRINT)).version == 2
        assert (await registry.load("acme", "h", 2)).card.version == 2

    asyncio.run(after_restart())
    db.close()


def test_a_tampered_file_is_healed_from_the_database_and_refused_when_both_are(
    tmp_path: Path, trained: TrainedHead, database_url: str
) -> None:
    """The local file is a cache: a damaged one is replaced by the database's verified copy.
    Only with that copy damaged too is the version DATA_LOSS."""
    registry, files, db = _registry(tmp_path, database_url)

    async def scenario() -> None:
        await registry.publish("acme", "h", trained, "bb", FINGERPRINT)
        onnx = files.folder("acme", "h", 1) / "head.onnx"
        good = onnx.read_bytes()
        onnx.write_bytes(good + b"\0")
        assert (await registry.load("acme", "h")).card.version == 1
        assert onnx.read_bytes() == good  # the cache file was written back
        onnx.write_bytes(good + b"\0")
        damage_database_copy(db, "acme", "h", 1)
        cold = HeadRegistry(db, files, cache_size=2, executor=ThreadPoolExecutor(1))
        with pytest.raises(DataLoss, match="fails the card's checksum, and its copy in the"):
            await cold.load("acme", "h")

    asyncio.run(scenario())
    db.close()
