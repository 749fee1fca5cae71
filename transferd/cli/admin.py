"""`transferd tenants ...` and `transferd keys ...`: the admin key's commands."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from transferd.cli.common import client, print_json


def add(commands: Any, flags: argparse.ArgumentParser) -> None:
    """Adds `tenants` and `keys` to the `transferd` subcommands."""
    tenants = commands.add_parser("tenants", help="tenants (the admin key)")
    tenant_commands = tenants.add_subparsers(dest="action", required=True)
    create = tenant_commands.add_parser("create", parents=[flags], help="create a tenant")
    create.add_argument("name", help="the tenant's name")
    create.set_defaults(run=_create_tenant)

    keys = commands.add_parser("keys", help="API keys (the admin key)")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create_key = key_commands.add_parser(
        "create",
        parents=[flags],
        help="create a key for a tenant: prints its secret, shown this once",
    )
    create_key.add_argument("tenant")
    create_key.set_defaults(run=_create_key)
    revoke = key_commands.add_parser("revoke", parents=[flags], help="revoke a key")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=_revoke_key)


def _create_tenant(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        tenant = admin.create_tenant(args.name)
    if args.json:
        print_json({"tenant": tenant})
    else:
        print(tenant)


def _create_key(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        key = admin.create_api_key(args.tenant)
    if args.json:
        print_json(asdict(key))
        return
    # The secret alone on stdout, so that KEY=$(transferd keys create acme) works.
    print(key.secret)
    print(
        f"key {key.key_id} for tenant {key.tenant}: its secret is shown only this once",
        file=sys.stderr,
    )


def _revoke_key(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        admin.revoke_api_key(args.key_id)
    if args.json:
        print_json({"key_id": args.key_id, "revoked": True})
    else:
        print(f"revoked {args.key_id}")
