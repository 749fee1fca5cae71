"""Job state writes: in order per job, progress coalesced, final states retried until stored.

Progress is written best-effort: while one write is in flight, newer snapshots replace the one
waiting, and a failed progress write is logged and dropped (the next one carries a newer state).
A job's final state is retried with backoff until it lands, however long the disk stays full:
the caller waits a bounded time for it, then the retries go on in the background, and until
they land the snapshot is served from memory (`unstored`). Every write is awaited here, so no
write's exception is ever left unretrieved; every failed write is counted (`failed_writes` and
the `transferd_job_write_failures_total` metric) and logged (a job's repeated progress failures
once). A write the caller does not await goes through
`in_background`, which keeps its task and reports its failure the same way.

Writes are fenced by the job's lease token: one refused because another replica claimed the job
(`LeaseLost`) is not retried and not counted as a failure; `on_lost` is told, so the job stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from service import metrics
from service.jobs.model import JobSnapshot
from service.jobs.store import JobStore, LeaseLost

log = logging.getLogger(__name__)


class JobWriter:
    """One writer task per job with something to write; at most one write per job in flight.

    Args:
        store: Where jobs are stored.
        first_backoff_s: Wait after a final write's first failure; doubles up to `max_backoff_s`.
        max_backoff_s: Longest wait between retries of a final write.
        final_wait_s: How long `final` waits for its write before leaving it to the background.
        on_lost: Told the id of a job whose write was refused because its lease was lost.
    """

    def __init__(
        self,
        store: JobStore,
        first_backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
        final_wait_s: float = 3.0,
        on_lost: Callable[[str], None] = lambda job_id: None,
    ) -> None:
        self._store = store
        self._on_lost = on_lost
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._final_wait_s = final_wait_s
        # job -> (latest, is final, lease token)
        self._waiting: dict[str, tuple[JobSnapshot, bool, int]] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._unstored: dict[str, JobSnapshot] = {}  # final states not stored yet
        self._stored: dict[str, asyncio.Event] = {}
        self._progress_lost: set[str] = set()  # jobs whose progress failed to store (logged)
        self._background: set[asyncio.Task[Any]] = set()  # writes nobody awaits, until done
        #: Writes that raised: every failed attempt, progress or final, and background writes.
        self.failed_writes = 0

    def progress(self, job: JobSnapshot, token: int) -> None:
        """Queues a best-effort write of a non-final snapshot (replacing one not yet written)
        under the lease of `token`."""
        self._waiting[job.job_id] = (job, False, token)
        self._ensure_writer(job.job_id)

    async def final(self, job: JobSnapshot, token: int) -> bool:
        """Writes a final snapshot under the lease of `token`; True if it was stored (or refused
        for a lost lease) within the wait, else it keeps being retried in the background (and
        `unstored` returns it until it lands)."""
        stored = self._stored.setdefault(job.job_id, asyncio.Event())
        self._unstored[job.job_id] = job
        self._waiting[job.job_id] = (job, True, token)
        self._ensure_writer(job.job_id)
        try:
            await asyncio.wait_for(stored.wait(), self._final_wait_s)
        except TimeoutError:
            log.error(
                "job %s: its final state (%s) could not be stored yet; retrying in the "
                "background, and serving it from memory meanwhile",
                job.job_id,
                job.state.value,
            )
            return False
        return True

    def in_background(self, write: Coroutine[Any, Any, Any], what: str) -> None:
        """Runs a write that nobody awaits (e.g. a job's final state from a done-callback): its
        task is kept until it is done, and its failure is reported (`failed`), never lost."""
        task = asyncio.get_running_loop().create_task(write, name=what)
        self._background.add(task)
        task.add_done_callback(lambda done: self._settle(done, what))

    def failed(self, what: str, error: BaseException) -> None:
        """Reports a write that raised: counted in `failed_writes` and logged with its traceback."""
        self._count_failure()
        log.error("%s failed: %s", what, error, exc_info=error)

    def _count_failure(self) -> None:
        self.failed_writes += 1
        metrics.JOB_WRITE_FAILURES.inc()

    def _settle(self, task: asyncio.Task[Any], what: str) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.failed(what, error)

    def unstored(self, job_id: str) -> JobSnapshot | None:
        """A final snapshot whose write has not landed yet, or None."""
        return self._unstored.get(job_id)

    @property
    def backlog(self) -> int:
        """Final states waiting to be stored."""
        return len(self._unstored)

    async def close(self, timeout: float) -> None:
        """Gives pending writes up to ``timeout`` seconds, then abandons them (their lease
        expires, or a restart re-queues them, and the job runs again)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._background:  # they queue writes of their own: first let them do so
            await asyncio.wait(list(self._background), timeout=timeout)
        writers = [*self._background, *self._writers.values()]
        if writers:
            await asyncio.wait(writers, timeout=max(deadline - loop.time(), 0.0))
        for writer in writers:
            writer.cancel()
        # Failures are reported where they happen (`_write`, `_settle`): only cancellations here.
        await asyncio.gather(*writers, return_exceptions=True)
        if self._unstored:
            log.error("%d job final state(s) were never stored", len(self._unstored))

    def _ensure_writer(self, job_id: str) -> None:
        if job_id not in self._writers:
            self._writers[job_id] = asyncio.get_running_loop().create_task(
                self._write(job_id), name=f"job-writer-{job_id}"
            )

    async def _write(self, job_id: str) -> None:
        failures = 0  # of the final write
        try:
            while job_id in self._waiting:
                job, final, token = self._waiting.pop(job_id)
                try:
                    await self._store.save(job, token)
                except LeaseLost:
                    # Another replica runs the job now: nothing of ours may be written, ever.
                    self._waiting.pop(job_id, None)
                    if final:
                        log.warning(
                            "job %s: not storing its final state (%s): another replica claimed "
                            "it since", job_id, job.state.value,
                        )  # fmt: skip
                        self._done(job_id)
                    self._on_lost(job_id)
                    continue
                except Exception as error:
                    self._count_failure()
                    if not final:
                        if job_id not in self._progress_lost:  # once a job: it repeats
                            self._progress_lost.add(job_id)
                            log.warning("job %s: progress not stored (%s)", job_id, error)
                        continue
                    failures += 1
                    self._waiting.setdefault(job_id, (job, True, token))  # nothing newer
                    if failures == 1 or failures % 20 == 0:
                        log.warning(
                            "job %s: final state not stored (attempt %d: %s); retrying",
                            job_id, failures, error,
                        )  # fmt: skip
                    backoff = self._first_backoff_s * 2 ** min(failures - 1, 16)
                    await asyncio.sleep(min(backoff, self._max_backoff_s))
                    continue
                if final:
                    self._progress_lost.discard(job_id)
                    if failures:
                        log.info("job %s: final state stored after %d failures", job_id, failures)
                    self._done(job_id)
        finally:
            self._writers.pop(job_id, None)

    def _done(self, job_id: str) -> None:
        """The job's final write is over (stored, or refused for a lost lease)."""
        self._unstored.pop(job_id, None)
        event = self._stored.pop(job_id, None)
        if event is not None:
            event.set()
