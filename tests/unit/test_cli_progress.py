"""`heads train`'s progress: a bar on a terminal (even one that reports no size), one line per
stage elsewhere, nothing when quiet."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

from tests.conftest import ROOT
from transferd.cli.progress import JobProgress
from transferd.client import JobStatus


def _statuses() -> list[JobStatus]:
    stages = [("embedding", 0.1, 0), ("embedding", 0.4, 0), ("fit", 0.6, 0), ("done", 1.0, 3)]
    return [
        JobStatus(
            job_id="j",
            head="topics",
            version=version,
            state="RUNNING",
            stage=stage,
            progress=progress,
            error="",
        )  # fmt: skip
        for stage, progress, version in stages
    ]


_ON_STDERR = """
from tests.unit.test_cli_progress import _statuses
from transferd.cli.progress import JobProgress

progress = JobProgress(quiet=False)
for status in _statuses():
    progress(status)
progress.close()
"""


def test_a_terminal_gets_a_bar_with_stage_and_percentage() -> None:
    # stderr on a bare pty, whose size is 0 x 0 (as under `script` or `ssh -T`): tqdm sizes
    # its bar from stderr's terminal, and drew nothing at all there before it was given one.
    main, side = pty.openpty()
    try:
        subprocess.run([sys.executable, "-c", _ON_STDERR], stderr=side, cwd=ROOT, check=True,
                       timeout=60)  # fmt: skip
        shown = os.read(main, 1 << 16).decode()
    finally:
        os.close(side)
        os.close(main)
    frames = [frame for frame in shown.replace("\n", "\r").split("\r") if frame.strip()]
    assert any(f.startswith("fit") and "60%|" in f for f in frames), frames
    assert frames[-1].startswith("done") and "100%|" in frames[-1]


def test_elsewhere_one_line_per_stage() -> None:
    stream = io.StringIO()
    progress = JobProgress(quiet=False, stream=stream)
    for status in _statuses():
        progress(status)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "topics: embedding (10%)",
        "topics: fit (60%)",
        "topics v3: done (100%)",
    ]


def test_quiet_shows_nothing() -> None:
    stream = io.StringIO()
    progress = JobProgress(quiet=True, stream=stream)
    for status in _statuses():
        progress(status)
    progress.close()
    assert stream.getvalue() == ""
