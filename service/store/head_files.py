"""Head artifacts on disk: `heads/<tenant>/<name>/<version>/{head.onnx, card.json}` — no pickle.

A version folder appears by one atomic rename of a fully written, fsynced staging folder, so a
crash leaves either nothing or a complete folder; the database row that makes it visible is
written after the rename (see HeadRegistry), and folders without a row are swept at start-up.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

ONNX_FILE = "head.onnx"
CARD_FILE = "card.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class HeadFiles:
    """Reads and writes head version folders under `<data_dir>/heads`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "heads"
        self._staging = self.root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def folder(self, tenant: str, name: str, version: int) -> Path:
        return self.root / tenant / name / str(version)

    def write(self, tenant: str, name: str, version: int, onnx: bytes, card_json: str) -> None:
        """Writes a version folder atomically (replacing an unpublished leftover of a crash)."""
        staging = self._staging / uuid.uuid4().hex
        staging.mkdir()
        try:
            _write_synced(staging / ONNX_FILE, onnx)
            _write_synced(staging / CARD_FILE, card_json.encode())
            _fsync_dir(staging)
            final = self.folder(tenant, name, version)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # never published (no database row): a crash's leftover
                shutil.rmtree(final)
            os.rename(staging, final)
            _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def read(self, tenant: str, name: str, version: int) -> tuple[bytes, str]:
        folder = self.folder(tenant, name, version)
        return (folder / ONNX_FILE).read_bytes(), (folder / CARD_FILE).read_text()

    def remove(self, tenant: str, name: str, version: int) -> None:
        shutil.rmtree(self.folder(tenant, name, version), ignore_errors=True)

    def sweep(self, published: set[tuple[str, str, int]]) -> list[Path]:
        """Removes staging leftovers and version folders that are not published; returns them."""
        removed: list[Path] = []
        for leftover in self._staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
        for folder in self.root.glob("*/*/*"):
            tenant, name, version = folder.parts[-3:]
            if tenant == ".staging" or not folder.is_dir():
                continue
            if not version.isdigit() or (tenant, name, int(version)) not in published:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed
