"""Head artifacts on disk: `heads/<tenant>/<name>/<version>/{head.onnx, card.json}` — no pickle.

A version folder appears by one atomic rename of a fully written, fsynced staging folder, so a
crash leaves either nothing or a complete folder; the database row that makes it visible is
written after the rename (see HeadRegistry). At start-up, staging leftovers are removed and a
version folder without a row is moved to `heads/.quarantine/<stamp>/…`, never deleted (see
`service.store.recovery`): the folder may be all that is left of a published head.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from heads import HeadCard, HeadFormatError, utc_now
from service.store.disk_errors import disk_full_as_exhausted
from service.store.files import fsync_dir, write_atomically

ONNX_FILE = "head.onnx"
CARD_FILE = "card.json"
STAGING = ".staging"
QUARANTINE = ".quarantine"


# Why a version cannot serve when its ONNX bytes are not the ones its card was published with.
CHECKSUM_DAMAGE = "its ONNX file fails the card's checksum"


def onnx_damage(onnx: bytes, card: HeadCard) -> str | None:
    """`CHECKSUM_DAMAGE` when `onnx` is not the file `card` was published with, else None."""
    return None if hashlib.sha256(onnx).hexdigest() == card.onnx_sha256 else CHECKSUM_DAMAGE


def new_stamp() -> str:
    """A unique, sortable name for one quarantine run (UTC time plus a random suffix)."""
    return f"{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class VersionFolder:
    """A folder at the version level of the tree: `<tenant>/<name>/<version>`."""

    path: Path
    tenant: str
    name: str
    version: str

    @property
    def key(self) -> tuple[str, str, int] | None:
        """(tenant, name, version) when the version part is a number, else None."""
        return (self.tenant, self.name, int(self.version)) if self.version.isdigit() else None

    def card(self) -> HeadCard | None:
        """The folder's card when it is readable, valid and names this very folder."""
        try:
            card = HeadCard.from_json((self.path / CARD_FILE).read_bytes())
        except (OSError, HeadFormatError):
            return None
        if (card.tenant, card.name, card.version) != self.key:
            return None
        return card


def _version_folders(root: Path) -> Iterator[VersionFolder]:
    """Entries three levels under `root` (tenant/name/version); dot-folders are ours, skipped."""
    if not root.is_dir():
        return
    for tenant in sorted(root.iterdir()):
        if tenant.name.startswith(".") or not tenant.is_dir():
            continue
        for name in sorted(tenant.iterdir()):
            if not name.is_dir():
                continue
            for version in sorted(name.iterdir()):
                yield VersionFolder(version, tenant.name, name.name, version.name)


class HeadFiles:
    """Reads and writes head version folders under `<data_dir>/heads`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "heads"
        self._staging = self.root / STAGING
        self.quarantine_root = self.root / QUARANTINE
        self._staging.mkdir(parents=True, exist_ok=True)

    def folder(self, tenant: str, name: str, version: int) -> Path:
        return self.root / tenant / name / str(version)

    def write(
        self,
        tenant: str,
        name: str,
        version: int,
        onnx: bytes,
        card_json: str,
        *,
        replace: bool = False,
    ) -> None:
        """Writes a version folder atomically.

        Args:
            replace: The folder is a cache of verified bytes (the database's copy of a published
                version): a damaged folder there is replaced, not quarantined.

        Raises:
            ResourceExhausted: the disk is full (nothing is left behind).
        """
        staging = self._staging / uuid.uuid4().hex
        try:
            with disk_full_as_exhausted("the head's files"):
                staging.mkdir()
                write_atomically(staging / ONNX_FILE, onnx)
                write_atomically(staging / CARD_FILE, card_json.encode())
                fsync_dir(staging)
                final = self.folder(tenant, name, version)
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists() and replace:
                    # Out of the way first (one rename), then the new folder in (another).
                    stale = self._staging / f"{uuid.uuid4().hex}.stale"
                    os.rename(final, stale)
                    os.rename(staging, final)
                    fsync_dir(final.parent)
                    shutil.rmtree(stale, ignore_errors=True)
                    return
                if final.exists():
                    # No row has this version (it is chosen past every row), so this is a folder
                    # the start-up sweep has not seen: keep it, as the sweep would.
                    self.quarantine(final, new_stamp())
                os.rename(staging, final)
                fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def read(self, tenant: str, name: str, version: int) -> tuple[bytes, bytes]:
        """The ONNX bytes and the card bytes of a version.

        Raises:
            FileNotFoundError: the folder or one of its files is gone.
        """
        folder = self.folder(tenant, name, version)
        return (folder / ONNX_FILE).read_bytes(), (folder / CARD_FILE).read_bytes()

    def remove(self, tenant: str, name: str, version: int) -> None:
        shutil.rmtree(self.folder(tenant, name, version), ignore_errors=True)

    def tenants(self) -> list[str]:
        """The tenants with a folder in the live tree."""
        hidden = {STAGING, QUARANTINE}
        return [p.name for p in self.root.iterdir() if p.is_dir() and p.name not in hidden]

    def remove_tenant(self, tenant: str) -> None:
        """Removes every folder of a deleted tenant: live, and under the quarantine."""
        shutil.rmtree(self.root / tenant, ignore_errors=True)
        if self.quarantine_root.is_dir():
            for run in self.quarantine_root.iterdir():
                shutil.rmtree(run / tenant, ignore_errors=True)

    def remove_path(self, path: Path) -> None:
        """Removes a version-level entry (a folder or a stray file) of the live tree."""
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def versions(self) -> list[VersionFolder]:
        """Every entry at the version level of the live tree."""
        return list(_version_folders(self.root))

    def quarantined(self) -> list[VersionFolder]:
        """Every entry at the version level under the quarantine, oldest run first."""
        if not self.quarantine_root.is_dir():
            return []
        return [
            found
            for run in sorted(self.quarantine_root.iterdir())
            if run.is_dir()
            for found in _version_folders(run)
        ]

    def quarantine(self, path: Path, stamp: str) -> Path:
        """Moves a version-level entry under `.quarantine/<stamp>/`, keeping its relative path."""
        target = self.quarantine_root / stamp / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
        return target

    def unquarantine(self, found: VersionFolder) -> Path:
        """Moves a quarantined version folder back to its place in the live tree."""
        target = self.folder(found.tenant, found.name, int(found.version))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(found.path, target)
        fsync_dir(target.parent)
        # Drop the now empty name/tenant/run folders of the quarantine (rmdir refuses non-empty).
        for parent in list(found.path.parents)[:3]:
            try:
                parent.rmdir()
            except OSError:
                break
        return target

    def remove_staging(self) -> list[Path]:
        """Removes staging leftovers: never renamed into place, so never published."""
        removed: list[Path] = []
        for leftover in self._staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
        return removed
