"""The training side of a replica: claims jobs for its free workers and keeps their leases.

The claim loop polls the database every `poll_s` while it has a free worker (at once when woken:
a local submit, a worker freed), so a job queued on any replica starts within about that. The
heartbeat runs every `poll_s` too (at most a third of the lease): it reads whether each held job
was cancelled (CancelJob on any replica) or claimed again elsewhere, and every third of the lease
it renews the leases. A lease is kept until the job's final state is stored, so no other replica
re-runs a job whose end is only waiting for its write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from service.jobs.control import JobControl, StopReason
from service.jobs.model import JobSnapshot
from service.jobs.queue import Claimed, Ended, JobQueue

log = logging.getLogger(__name__)


@dataclass
class Held:
    """A job this replica claimed, from its claim until its final state is stored."""

    claimed: Claimed
    snapshot: JobSnapshot  # the latest state, ahead of the database between writes
    control: JobControl = field(default_factory=JobControl)
    task: asyncio.Task[None] | None = None
    started: bool = False  # its task began (a stop before that is seen when it begins)
    ended: bool = False  # its work ended (the training thread included): its worker is free

    @property
    def job_id(self) -> str:
        return self.claimed.snapshot.job_id

    @property
    def token(self) -> int:
        return self.claimed.token


@dataclass(frozen=True)
class WorkerSettings:
    workers: int
    lease_s: float
    poll_s: float


class Worker:
    """Claims and holds jobs; `run(held)` runs one (its task), and must call `release` once its
    work has ended.

    Args:
        queue: The database queue.
        settings: Workers, lease and poll interval.
        run: Runs a claimed job to its end.
        ended: Told of a job the claim ended instead of running it.
        writing: Whether a job's final state still waits to be stored (its lease is kept).
        counted: Told the jobs queued or running in the database, at each claim.
    """

    def __init__(
        self,
        queue: JobQueue,
        settings: WorkerSettings,
        run: Callable[[Held], Coroutine[Any, Any, None]],
        ended: Callable[[JobSnapshot], None],
        writing: Callable[[str], bool],
        counted: Callable[[int], None],
    ) -> None:
        self._queue = queue
        self._settings = settings
        self._run = run
        self._ended = ended
        self._writing = writing
        self._counted = counted
        self._held: dict[str, Held] = {}
        self._busy = 0  # workers whose job's work has not ended
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        """Starts claiming (nothing on a replica without workers) and the heartbeat."""
        if self._settings.workers <= 0 or self._loops:
            return
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._claim_loop(), name="job-claims"),
            loop.create_task(self._heartbeat(), name="job-heartbeat"),
        ]

    def wake(self) -> None:
        """Claims at once instead of at the next poll (a job was queued, a worker freed)."""
        self._wake.set()

    def held(self, job_id: str) -> Held | None:
        return self._held.get(job_id)

    def held_ids(self) -> list[str]:
        """The jobs held here (running, or ended with their final state being written)."""
        return list(self._held)

    def stop(self, job_id: str, reason: StopReason) -> bool:
        """Asks a held job to stop; False when it is not held here, its work already ended, or
        it is publishing (too late: publishing is atomic)."""
        held = self._held.get(job_id)
        if held is None or held.ended or not held.control.stop(reason):
            return False
        if held.started and held.task is not None:
            held.task.cancel()  # interrupts embedding at once; a training thread is awaited
        return True

    def release(self, held: Held) -> None:
        """A job's work has ended (its training thread has returned): its worker is free."""
        if not held.ended:
            held.ended = True
            self._busy -= 1
            self.wake()

    def forget(self, job_id: str) -> None:
        """Drops a job whose lease is lost: its state is another replica's now."""
        self._held.pop(job_id, None)

    async def close(self) -> None:
        """Stops claiming; stops every held job (it goes back to the queue) and awaits them."""
        self._closing = True
        self.wake()
        # Not cancelled: a claim committed while its caller was cancelled would leave a job
        # RUNNING that nobody runs until its lease expires. One claimed now is handed back below.
        await asyncio.gather(*self._loops[:1], return_exceptions=True)
        for job_id in list(self._held):
            self.stop(job_id, StopReason.SHUTDOWN)
        tasks = [held.task for held in self._held.values() if held.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)  # failures: see `_observe`
        for task in self._loops[1:]:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def _claim_loop(self) -> None:
        failing = False
        while not self._closing:
            try:
                while self._busy < self._settings.workers and not self._closing:
                    outcome, active = await self._queue.claim(exclude=list(self._held))
                    self._counted(active)
                    if outcome is None:
                        break
                    if isinstance(outcome, Ended):
                        self._ended(outcome.snapshot)
                        continue
                    self._start(outcome)
                if failing:
                    log.info("claiming jobs works again")
                    failing = False
            except Exception as error:  # the database is down: claim again at the next poll
                if not failing:
                    log.warning("could not claim jobs (%s); retrying every %gs", error,
                                self._settings.poll_s)  # fmt: skip
                    failing = True
            try:
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def _start(self, claimed: Claimed) -> None:
        held = Held(claimed, claimed.snapshot)
        self._held[held.job_id] = held
        self._busy += 1
        held.task = asyncio.get_running_loop().create_task(
            self._run(held), name=f"job-{held.job_id}"
        )
        held.task.add_done_callback(lambda task: self._observe(held, task))
        log.info("job %s: claimed (attempt token %d)", held.job_id, held.token)

    def _observe(self, held: Held, task: asyncio.Task[None]) -> None:
        """A job's task is done: its failure (which `run` does not handle) is logged."""
        self.release(held)  # in case `run` ended before it could
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("job %s: %s", held.job_id, error, exc_info=error)

    async def _heartbeat(self) -> None:
        interval = min(self._settings.poll_s, self._settings.lease_s / 3)
        renew_every = self._settings.lease_s / 3
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        failing = False
        while True:
            await asyncio.sleep(interval)
            self._prune()
            held = {job_id: h.token for job_id, h in self._held.items()}
            renew = loop.time() - renewed >= renew_every
            try:
                kept = await self._queue.keep(held, renew)
            except Exception as error:  # keep trying: the lease holds for a while
                if not failing:
                    log.warning("could not renew job leases (%s); retrying", error)
                    failing = True
                continue
            failing = False
            if renew:
                renewed = loop.time()
            for job_id in kept.cancel:
                if self.stop(job_id, StopReason.CANCELLED):
                    log.info("job %s: cancelled on another replica; stopping it", job_id)
            for job_id in kept.lost:
                self.lost(job_id)

    def lost(self, job_id: str) -> None:
        """The job's lease is gone (a fenced write or the heartbeat found it): stop the job;
        its writes are refused from now on."""
        held = self._held.get(job_id)
        if held is None or held.ended:
            return  # its work is over: nothing to stop, and its writes are fenced
        log.warning("job %s: its lease was taken over by another replica; stopping it", job_id)
        self.stop(job_id, StopReason.LEASE_LOST)

    def _prune(self) -> None:
        """Lets go of jobs whose work ended and whose final state is stored."""
        for job_id, held in list(self._held.items()):
            if held.ended and held.task is not None and held.task.done():
                if not self._writing(job_id):
                    del self._held[job_id]
