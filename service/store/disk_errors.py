"""Turns "the disk is full" into `ResourceExhausted`, once, where the store writes.

A full disk is an operator's problem that clears when space is freed: the client should see
RESOURCE_EXHAUSTED with a message that says so, not INTERNAL. SQLite reports it as
SQLITE_FULL ("database or disk is full"); file writes as ENOSPC or EDQUOT.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError

from service.errors import ResourceExhausted

# What SQLite says for SQLITE_FULL (a write that needs space the disk does not have).
SQLITE_FULL_TEXT = "database or disk is full"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_MESSAGE = (
    "the server's storage is full, so nothing can be stored now; "
    "retry after the operator has freed disk space"
)


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) says the disk or the database is full."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(current, OperationalError | sqlite3.OperationalError) and (
            SQLITE_FULL_TEXT in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def disk_full_as_exhausted(what: str) -> Iterator[None]:
    """Re-raises a full-disk error inside the block as `ResourceExhausted`.

    Args:
        what: What was being stored, for the message (e.g. "the head's files").
    """
    try:
        yield
    except Exception as error:
        if is_disk_full(error):
            raise ResourceExhausted(f"{DISK_FULL_MESSAGE} (writing {what})") from error
        raise
