"""`transferd tenants ...` and `transferd keys ...`: the admin key's commands."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

from transferd.cli.common import client, print_json


def add(commands: Any, flags: argparse.ArgumentParser) -> None:
    """Adds `tenants` and `keys` to the `transferd` subcommands."""
    tenants = commands.add_parser("tenants", help="tenants (the admin key)")
    tenant_commands = tenants.add_subparsers(dest="action", required=True)
    create = tenant_commands.add_parser("create", parents=[flags], help="create a tenant")
    create.add_argument("name", help="the tenant's name")
    create.set_defaults(run=_create_tenant)
    listing = tenant_commands.add_parser("list", parents=[flags], help="list the tenants")
    listing.set_defaults(run=_list_tenants)
    delete = tenant_commands.add_parser(
        "delete",
        parents=[flags],
        help="delete a tenant: its keys, jobs and heads, on every replica (cannot be undone)",
    )
    delete.add_argument("name", help="the tenant's name")
    delete.set_defaults(run=_delete_tenant)

    keys = commands.add_parser("keys", help="API keys (the admin key)")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create_key = key_commands.add_parser(
        "create",
        parents=[flags],
        help="create a key for a tenant: prints its secret, shown this once",
    )
    create_key.add_argument("tenant")
    create_key.add_argument(
        "--ttl", type=int, default=0, metavar="SECONDS", help="expire the key after SECONDS"
    )
    create_key.set_defaults(run=_create_key)
    list_keys = key_commands.add_parser(
        "list", parents=[flags], help="list a tenant's keys (never their secrets)"
    )
    list_keys.add_argument("tenant")
    list_keys.add_argument("--all", action="store_true", help="revoked keys too")
    list_keys.set_defaults(run=_list_keys)
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


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _list_tenants(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        tenants = admin.list_tenants()
    if args.json:
        print_json([{"tenant": t.name, "created_at": _iso(t.created_at)} for t in tenants])
        return
    for tenant in tenants:
        print(f"{tenant.name}\tcreated {_iso(tenant.created_at)}")


def _delete_tenant(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        deleted = admin.delete_tenant(args.name)
    if args.json:
        print_json({"tenant": args.name, **asdict(deleted)})
        return
    print(
        f"deleted {args.name}: {deleted.keys_revoked} keys, {deleted.jobs_stopped} running "
        f"jobs, {deleted.head_versions_deleted} head versions"
    )


def _list_keys(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        keys = admin.list_api_keys(args.tenant, include_revoked=args.all)
    rows = [
        {
            "key_id": key.key_id,
            "tenant": key.tenant,
            "created_at": _iso(key.created_at),
            "expires_at": _iso(key.expires_at),
            "last_used_at": _iso(key.last_used_at),
            "revoked_at": _iso(key.revoked_at),
            "expired": key.expired,
        }
        for key in keys
    ]
    if args.json:
        print_json(rows)
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else "expired" if row["expired"] else "live"
        print(
            f"{row['key_id']}\t{state}\tcreated {row['created_at']}\t"
            f"expires {row['expires_at'] or 'never'}\tlast used {row['last_used_at'] or 'never'}"
        )


def _create_key(args: argparse.Namespace) -> None:
    with client(args, admin=True) as admin:
        key = admin.create_api_key(args.tenant, ttl_seconds=args.ttl)
    if args.json:
        expiry = {"expires_at": _iso(key.expires_at)} if key.expires_at else {}
        print_json({"tenant": key.tenant, "key_id": key.key_id, "secret": key.secret, **expiry})
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
