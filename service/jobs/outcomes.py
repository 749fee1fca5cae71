"""How jobs end: the reasons clients read, and the final fields of a stopped job."""

from __future__ import annotations

from typing import Any

from heads import InvalidParams, InvalidTrainingData
from service.errors import TransferdError
from service.jobs.control import StopReason
from service.jobs.model import JobState

#: Jobs of releases that kept their request in memory only: nothing can run them again.
RESTART_REASON = "the server restarted before this job finished; nothing was published, train again"
CANCEL_REASON = "cancelled by the client"
#: The stage of a job handed back to the queue (shutdown, or a restart): it runs again.
REQUEUED = "requeued"


def timeout_reason(seconds: float) -> str:
    """The error of a job stopped by its wall-clock timeout."""
    return (
        f"the job ran longer than this server's limit of {seconds:g} s and was stopped; "
        "nothing was published: train on fewer examples or with cheaper params"
    )


def attempts_reason(attempts: int) -> str:
    """The error of a job claimed `job_max_attempts` times whose replicas never finished it."""
    return (
        f"claimed {attempts} times; the replicas running it stopped each time (crashed, were "
        "killed or shut down) before it finished; nothing was published, train again"
    )


def unreadable_reason(detail: str) -> str:
    """The error of a job whose stored request this release cannot read."""
    return f"this server cannot read the job's stored request ({detail}); train again"


def stopped(reason: StopReason, timeout_s: float) -> dict[str, Any]:
    """The final fields of a job stopped for `reason` (CANCELLED or TIMED_OUT; a job stopped by
    shutdown goes back to the queue and one whose lease was lost is another replica's)."""
    if reason is StopReason.CANCELLED:
        return dict(state=JobState.CANCELLED, stage="cancelled", error=CANCEL_REASON)
    assert reason is StopReason.TIMED_OUT, reason
    return dict(state=JobState.FAILED, stage="timed_out", error=timeout_reason(timeout_s))


def client_message(error: Exception) -> str | None:
    """A message the tenant may see for errors about their own data; None for internal errors."""
    if isinstance(error, InvalidTrainingData | InvalidParams | TransferdError):
        return str(error)
    return None
