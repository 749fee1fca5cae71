"""Showing a training job's progress on stderr while `heads train` waits for it."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from tqdm import tqdm

from transferd.client import JobStatus

PERCENT = 100
MAX_WIDTH = 100  # columns of the bar's line, however wide the terminal


def head_ref(status: JobStatus) -> str:
    """`name vN` once the job has published its version, the name alone before."""
    return f"{status.head} v{status.version}" if status.version else status.head


class JobProgress:
    """A progress bar (stage and percentage) on a terminal; one line per stage elsewhere, so
    a CI log shows where a job is without a bar's control characters; nothing when `quiet`."""

    def __init__(self, quiet: bool, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._quiet = quiet
        self._bar: tqdm | None = None
        if not quiet and stream.isatty():
            size = shutil.get_terminal_size(fallback=(80, 24))  # the fallback for a size of 0
            self._bar = tqdm(
                total=PERCENT,
                desc="queued",
                file=stream,
                unit="%",
                bar_format="{desc:<20} {percentage:3.0f}%|{bar}| {elapsed}",
                leave=True,
                # A terminal that reports no size (a bare pty) would get no bar at all.
                ncols=min(size.columns, MAX_WIDTH),
                nrows=size.lines,
            )
        self._stage = ""

    def __call__(self, status: JobStatus) -> None:
        if self._quiet:
            return
        stage = status.stage or status.state.lower()
        if self._bar is not None:
            self._bar.set_description_str(stage, refresh=False)
            self._bar.n = round(status.progress * PERCENT)
            self._bar.refresh()
        elif stage != self._stage:
            print(f"{head_ref(status)}: {stage} ({status.progress:.0%})",
                  file=self._stream, flush=True)  # fmt: skip
        self._stage = stage

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
