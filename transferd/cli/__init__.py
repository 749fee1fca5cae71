"""The `transferd` command line's client commands: tenants, keys, heads, jobs, predict, embed.

They talk to a running server through `transferd.client`, and import nothing of the server, so
they start fast. Expected failures (a refused call, a failed job, a bad data file) print one
line each on stderr and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from transferd.cli import admin, heads, infer
from transferd.cli.common import EXIT_FAILED, EXIT_USAGE, CliError, connection_flags, fail
from transferd.cli.datafile import DataFileError
from transferd.client import TransferdError

COMMANDS = ("tenants", "keys", "heads", "jobs", "predict", "embed")


def add_commands(commands: Any) -> None:
    """Adds the client commands to the `transferd` parser's subcommands."""
    flags = connection_flags()
    admin.add(commands, flags)
    heads.add(commands, flags)
    infer.add(commands, flags)


def run(args: argparse.Namespace) -> None:
    """Runs the parsed client command; exits with its status on an expected failure."""
    try:
        args.run(args)
    except TransferdError as error:
        # The status by name, then the server's own message: what a script greps and a
        # person reads.
        fail(f"{error.code.name}: {error.message}", EXIT_FAILED)
    except DataFileError as error:
        for line in error.lines():
            print(f"transferd: {line}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except CliError as error:
        fail(str(error), error.exit_code)
    except BrokenPipeError:  # `transferd embed ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        sys.exit(0)
