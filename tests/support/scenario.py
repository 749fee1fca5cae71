"""Running an async test scenario with a net under it: a hang fails in 30 s, not in 10 min."""

from __future__ import annotations

import asyncio
import faulthandler
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Far above any scenario's time (a few seconds on a loaded 2-core machine).
SCENARIO_TIMEOUT_S = 30.0


def run(scenario: Coroutine[Any, Any, T], timeout_s: float = SCENARIO_TIMEOUT_S) -> T:
    """`asyncio.run(scenario)`, failing the test if it has not finished within `timeout_s`.

    A regression that leaves a request waiting forever (admitted where it should have been
    refused, a call never let go) fails here with its place in the scenario in the traceback.
    """

    async def bounded() -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await scenario
        except TimeoutError as error:
            # Where every thread was (a database call, a join): the scenario's own place is in
            # the chained traceback.
            faulthandler.dump_traceback(all_threads=True)
            raise AssertionError(f"the scenario did not finish within {timeout_s:g} s") from error

    return asyncio.run(bounded())
