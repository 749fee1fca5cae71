"""Runs a command that dies with its parent: `make serve` killed is the server killed.

make runs `transferd serve` as its child. A SIGTERM to make reaches the child (make forwards
it), but a SIGKILL does not: the server would keep running, holding its ports, after whatever
started `make serve` killed it. On Linux the kernel can send the child a signal when its parent
dies (PR_SET_PDEATHSIG, kept across exec); elsewhere the command runs unchanged.

Usage: python -m devtools.bound_to_parent COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def bind_to_parent() -> None:
    """Asks for SIGKILL when the parent dies (Linux); exits if it already has."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not allowed here (a sandbox): run unbound rather than not at all
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(1)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bind_to_parent()
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
