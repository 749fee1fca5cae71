"""Running a conversion off the event loop when it is large enough to stall other calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


async def off_loop_if(large: bool, executor: Executor, work: Callable[..., T], *args: object) -> T:
    """`work(*args)` in `executor` when `large`, else right here (a thread hop costs more than a
    small conversion)."""
    if not large:
        return work(*args)
    return await asyncio.get_running_loop().run_in_executor(executor, work, *args)
