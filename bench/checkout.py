"""Puts the checkout's root on `sys.path` for the benchmarks.

`devtools/` (the server launcher, client helpers, the local CPU Triton) is development tooling:
the wheel does not carry it, so the benchmarks import it from the checkout they run in.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
