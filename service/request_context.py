"""What the transport knows about the current request, for the domain: its deadline.

Set by the API layer for each RPC (contextvars follow the handler's task and the tasks it
starts), read by the schedulers so that work whose caller has given up is dropped, not done.
Who is calling lives in `service.tenancy.principal`.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

# The tenant name training jobs embed as: they share the fair path with live traffic, as one
# tenant of their own. Not a valid tenant name (names start with a letter or digit).
TRAINING_TENANT = "~training"

_deadline: ContextVar[float | None] = ContextVar("transferd_deadline", default=None)


def set_deadline_in(seconds: float | None) -> None:
    """Records that the current request must be answered within `seconds` (None: no deadline)."""
    if seconds is None:
        _deadline.set(None)
    else:
        _deadline.set(asyncio.get_running_loop().time() + seconds)


def current_deadline() -> float | None:
    """The current request's deadline on the event loop's clock (`loop.time()`), or None."""
    return _deadline.get()
