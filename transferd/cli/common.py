"""What every client command shares: connection flags, the client, output and errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import grpc

from transferd.client import Client

DEFAULT_URL = "localhost:50051"

# Exit codes: scripts tell a refused call or failed job from a mistake on the command line.
EXIT_FAILED = 1  # the server refused the call, or the job failed or was cancelled
EXIT_USAGE = 2  # bad flags or a bad data file (argparse uses 2 as well): nothing was sent


class CliError(Exception):
    """An expected failure: printed as one line (or a few, for a data file), no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def connection_flags() -> argparse.ArgumentParser:
    """The flags every client command takes after its name (`transferd keys create acme
    --json`), as a parent parser."""
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        default=os.environ.get("TRANSFERD_URL", DEFAULT_URL),
        help=f"host:port of the server (TRANSFERD_URL, default {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        help="a tenant's key, or the admin key for tenants and keys (TRANSFERD_API_KEY; the "
        "admin commands also read TRANSFERD_ADMIN_KEY when it is unset)",
    )
    group.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    group.add_argument(
        "--tls-ca-file",
        type=Path,
        metavar="PEM",
        help="TLS, trusting this CA's certificates (a private CA); implies --tls",
    )
    group.add_argument(
        "--tls-cert-file",
        type=Path,
        metavar="PEM",
        help="this client's certificate chain, for a server that asks for one (mTLS); implies --tls",
    )
    group.add_argument("--tls-key-file", type=Path, metavar="PEM", help="its private key")
    group.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    group.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="deadline of each call (60)"
    )
    return flags


def api_key(args: argparse.Namespace, admin: bool = False) -> str:
    """The key from --api-key, TRANSFERD_API_KEY, or for admin commands TRANSFERD_ADMIN_KEY
    (the server's own setting, so an operator's shell that started it can manage tenants)."""
    key = args.api_key or os.environ.get("TRANSFERD_API_KEY")
    if not key and admin:
        key = os.environ.get("TRANSFERD_ADMIN_KEY")
    if not key:
        where = "--api-key or TRANSFERD_API_KEY" + (" (or TRANSFERD_ADMIN_KEY)" if admin else "")
        raise CliError(f"no API key: give {where}", EXIT_USAGE)
    return key


def _read(flag: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliError(f"{flag} {path}: {error.strerror}", EXIT_USAGE) from None


def _tls(args: argparse.Namespace) -> bool | grpc.ChannelCredentials:
    if (args.tls_cert_file is None) != (args.tls_key_file is None):
        raise CliError("--tls-cert-file and --tls-key-file go together", EXIT_USAGE)
    roots = _read("--tls-ca-file", args.tls_ca_file)
    chain = _read("--tls-cert-file", args.tls_cert_file)
    key = _read("--tls-key-file", args.tls_key_file)
    if roots is None and chain is None:
        return bool(args.tls)
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )


@contextmanager
def client(args: argparse.Namespace, admin: bool = False) -> Iterator[Client]:
    """A Client for the command's flags, closed afterwards."""
    with Client(args.url, api_key=api_key(args, admin), tls=_tls(args), timeout=args.timeout) as c:
        yield c


def print_json(value: Any) -> None:
    """One JSON document on one line (JSON Lines when called once per item)."""
    print(json.dumps(value, ensure_ascii=False, allow_nan=False))


def fail(message: str, exit_code: int = EXIT_FAILED) -> NoReturn:
    """Prints `transferd: message` on stderr and exits."""
    print(f"transferd: {message}", file=sys.stderr)
    sys.exit(exit_code)


def version_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--version", type=int, default=0, metavar="N", help=f"{what} (default: the latest)"
    )
