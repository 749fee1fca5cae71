"""How long a job's examples outlive it: `job_payload_retention_s` (default 0).

A job carries its validated request (the examples) in its row until it ends. With no retention
the final state drops it in the same write (`service.jobs.store.ENDED`); with a retention the
final state keeps it, and `PayloadSweeper` drops it once the job has been over that long: every
replica sweeps with one idempotent UPDATE (`service.jobs.store.purge_payloads`), so replicas
sharing PostgreSQL need no coordination. At start-up the sweep runs once whatever the
retention, so a retention shortened (or turned off) since the last run takes effect at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from service.jobs.queue import Clock
from service.jobs.store import purge_payloads
from service.store.database import Database

log = logging.getLogger(__name__)

#: The sweep's period is half the retention, within these bounds: a request outlives its
#: retention by at most one period, and a long retention costs one UPDATE a minute.
MIN_SWEEP_S = 0.5
MAX_SWEEP_S = 60.0


def sweep_interval(retention_s: float) -> float:
    """Seconds between two sweeps under a retention of `retention_s` seconds."""
    return min(max(retention_s / 2, MIN_SWEEP_S), MAX_SWEEP_S)


class PayloadSweeper:
    """Drops the stored requests of jobs that ended more than `retention_s` seconds ago.

    Args:
        db: The metadata database.
        retention_s: How long an ended job keeps its request (0: the final state drops it, and
            only the start-up sweep runs).
        clock: The time (UTC), the clock of the jobs' `updated_at`.
    """

    def __init__(self, db: Database, retention_s: float, clock: Clock) -> None:
        self._db = db
        self._retention = timedelta(seconds=retention_s)
        self._clock = clock
        self.interval_s = sweep_interval(retention_s)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def _cutoff(self) -> datetime:
        return self._clock() - self._retention

    def sweep_now(self) -> int:
        """One sweep on the calling thread (start-up); returns the requests dropped."""
        purged = self._db.call(lambda session: purge_payloads(session, self._cutoff()))
        if purged:
            log.info("dropped the stored examples of %d ended job(s) past their retention", purged)
        return purged

    def start(self) -> None:
        """Sweeps every `interval_s` until `close` (only under a retention)."""
        if self._retention and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="job-payload-sweeper"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                purged = await self._db.run(lambda session: purge_payloads(session, self._cutoff()))
            except Exception as error:  # a database outage: the next sweep catches up
                if not self._failing:
                    log.warning("could not drop expired job examples (retried): %s", error)
                self._failing = True
                continue
            if self._failing:
                log.info("dropping expired job examples again")
            self._failing = False
            if purged:
                log.info("dropped the stored examples of %d job(s) ended over %s ago", purged,
                         self._retention)  # fmt: skip
