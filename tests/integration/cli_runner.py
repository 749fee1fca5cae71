"""Running the `transferd` console script as a user runs it, for the tests of its commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TRANSFERD = str(Path(sys.executable).with_name("transferd"))


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines()]


def transferd(*args: str | Path, url: str, key: str | None = None, timeout: float = 300) -> Run:
    """Runs the console script with a clean environment: only what is passed counts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFERD_")}
    env["TRANSFERD_URL"] = url
    if key is not None:
        env["TRANSFERD_API_KEY"] = key
    done = subprocess.run(
        [TRANSFERD, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )
    return Run(done.returncode, done.stdout, done.stderr)
