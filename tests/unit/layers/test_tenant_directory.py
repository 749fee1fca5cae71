"""The TenantDirectory on a real database of each kind: tenants, keys, authentication, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from service.store.database import Database
from service.tenancy.directory import IssuedKey, TenantDirectory
from service.tenancy.principal import Principal
from tests.support.postgres import database_url
from tests.support.scenario import run

__all__ = ["database_url"]  # the fixture, used by name

ADMIN_SECRET = "admin-secret-for-tests-0123456789"


def _authenticate(directory: TenantDirectory, secret: str) -> Principal:
    return run(directory.authenticate(secret))


def _forged(secret: str) -> str:
    """The same key id with another secret part."""
    last = "A" if secret[-1] != "A" else "B"
    return secret[:-1] + last


def test_a_created_tenants_keys_authenticate_as_that_tenant(
    tmp_path: Path, database_url: str
) -> None:
    """Each key authenticates as its own tenant and key id; forged, unknown and empty secrets
    are refused with one message; the admin secret is the admin, with no tenant."""
    db = Database(tmp_path, database_url)
    directory = TenantDirectory(db, ADMIN_SECRET)

    async def scenario() -> tuple[IssuedKey, IssuedKey, IssuedKey]:
        assert await directory.create_tenant("acme") == "acme"
        await directory.create_tenant("globex")
        return (
            await directory.create_key("acme"),
            await directory.create_key("acme"),
            await directory.create_key("globex"),
        )

    first, second, other = run(scenario())
    assert first.key_id != second.key_id and first.secret != second.secret
    assert _authenticate(directory, first.secret) == Principal("acme", first.key_id)
    assert _authenticate(directory, second.secret) == Principal("acme", second.key_id)
    assert _authenticate(directory, other.secret) == Principal("globex", other.key_id)
    messages = set()
    for bad in (_forged(first.secret), "tdk_0123456789abcdef_nothing", "", "Bearer x"):
        with pytest.raises(Unauthenticated) as refused:
            _authenticate(directory, bad)
        messages.add(str(refused.value))
    assert len(messages) == 1  # no oracle: every refusal reads the same
    admin = _authenticate(directory, ADMIN_SECRET)
    assert admin.is_admin and admin.tenant is None
    db.close()


def test_creating_an_existing_tenant_is_already_exists_and_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """A second create of a name is ALREADY_EXISTS naming it; the tenant's keys still work."""
    db = Database(tmp_path, database_url)
    directory = TenantDirectory(db, None)

    async def scenario() -> None:
        await directory.create_tenant("acme")
        key = await directory.create_key("acme")
        with pytest.raises(AlreadyExists, match="'acme'"):
            await directory.create_tenant("acme")
        assert (await directory.authenticate(key.secret)).tenant == "acme"

    run(scenario())
    db.close()


def test_names_and_unknown_tenants_are_refused(tmp_path: Path, database_url: str) -> None:
    """Bad tenant names are INVALID_ARGUMENT naming the field; a key for a tenant that does not
    exist is NOT_FOUND; revoking an unknown key is NOT_FOUND."""
    db = Database(tmp_path, database_url)
    directory = TenantDirectory(db, None)

    async def scenario() -> None:
        for bad in ("", "Acme", "acme\n", "-acme", "a" * 64, "ac me"):
            with pytest.raises(InvalidArgument) as refused:
                await directory.create_tenant(bad)
            assert refused.value.field == "tenant"
        with pytest.raises(NotFound):
            await directory.create_key("nobody")
        with pytest.raises(NotFound):
            await directory.revoke_key("0123456789abcdef")
        with pytest.raises(InvalidArgument) as empty:
            await directory.revoke_key("")
        assert empty.value.field == "key_id"

    run(scenario())
    db.close()


def test_revoked_keys_stop_at_once_and_keys_survive_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    """A revoked key is refused immediately and stays refused after a restart; the other keys
    authenticate after a restart (the cache is rebuilt from the database); a key is revoked once."""
    db = Database(tmp_path, database_url)
    directory = TenantDirectory(db, None)

    async def scenario() -> tuple[IssuedKey, IssuedKey]:
        await directory.create_tenant("acme")
        kept, revoked = await directory.create_key("acme"), await directory.create_key("acme")
        await directory.revoke_key(revoked.key_id)
        with pytest.raises(NotFound):
            await directory.revoke_key(revoked.key_id)
        return kept, revoked

    kept, revoked = run(scenario())
    with pytest.raises(Unauthenticated):
        _authenticate(directory, revoked.secret)
    db.close()

    reopened = Database(tmp_path, database_url)
    restarted = TenantDirectory(reopened, None)
    assert _authenticate(restarted, kept.secret) == Principal("acme", kept.key_id)
    with pytest.raises(Unauthenticated):
        _authenticate(restarted, revoked.secret)
    reopened.close()
