"""Tenants and API keys: admin-only management, keys stored as hashes, every refusal's code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.client import bearer
from devtools.launcher import ServerProcess
from transferd.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    heads_pb2,
    heads_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)

EMBED = embedding_pb2.EmbedRequest(
    backbone="all-minilm-l6-v2", inputs=[common_pb2.Input(text="hi there")]
)


@pytest.fixture(scope="module")
def raw_channel(server: ServerProcess):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_calls_without_a_valid_key_are_unauthenticated(raw_channel, tenant_key: str) -> None:
    embed = embedding_pb2_grpc.EmbeddingServiceStub(raw_channel)
    heads = heads_pb2_grpc.HeadServiceStub(raw_channel)
    forged = tenant_key[:-4] + ("AAAA" if not tenant_key.endswith("AAAA") else "BBBB")
    for metadata in [(), bearer("nonsense"), bearer(forged), (("authorization", tenant_key),)]:
        assert (
            _code(lambda m=metadata: embed.Embed(EMBED, metadata=m))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert _code(
            lambda m=metadata: heads.ListHeads(heads_pb2.ListHeadsRequest(), metadata=m)
        ) == (grpc.StatusCode.UNAUTHENTICATED)
    assert len(embed.Embed(EMBED, metadata=bearer(tenant_key)).embeddings) == 1
    # Health needs no key: probes and load balancers call it.
    reply = health_pb2_grpc.HealthStub(raw_channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_tenant_service_is_for_the_admin_only(
    raw_channel, server: ServerProcess, tenant_key: str
) -> None:
    tenants = tenants_pb2_grpc.TenantServiceStub(raw_channel)
    request = tenants_pb2.CreateTenantRequest(tenant="intruder")
    assert (
        _code(lambda: tenants.CreateTenant(request, metadata=bearer(tenant_key)))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert _code(lambda: tenants.CreateTenant(request)) == grpc.StatusCode.UNAUTHENTICATED
    # And the admin key is no tenant: it cannot own heads.
    heads = heads_pb2_grpc.HeadServiceStub(raw_channel)
    admin = bearer(server.admin_key)
    assert (
        _code(lambda: heads.ListHeads(heads_pb2.ListHeadsRequest(), metadata=admin))
        == grpc.StatusCode.PERMISSION_DENIED
    )


def test_tenant_and_key_validation(raw_channel, server: ServerProcess) -> None:
    tenants = tenants_pb2_grpc.TenantServiceStub(raw_channel)
    admin = bearer(server.admin_key)
    for bad in ("", "Upper", "has space", "x" * 64, "../etc"):
        with pytest.raises(grpc.RpcError) as caught:
            tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant=bad), metadata=admin)
        assert (
            caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "tenant" in caught.value.details()
        )
    tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="dup"), metadata=admin)
    with pytest.raises(grpc.RpcError) as caught:
        tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="dup"), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS, caught.value.details()
    assert caught.value.details() == "tenant 'dup' already exists"
    # The tenant is still usable: creating it again changed nothing.
    key = tenants.CreateApiKey(tenants_pb2.CreateApiKeyRequest(tenant="dup"), metadata=admin)
    assert key.tenant == "dup"
    missing = tenants_pb2.CreateApiKeyRequest(tenant="no-such-tenant")
    assert _code(lambda: tenants.CreateApiKey(missing, metadata=admin)) == grpc.StatusCode.NOT_FOUND
    revoke = tenants_pb2.RevokeApiKeyRequest(key_id="0123456789abcdef")
    assert _code(lambda: tenants.RevokeApiKey(revoke, metadata=admin)) == grpc.StatusCode.NOT_FOUND


def test_revoked_key_is_refused_at_once(raw_channel, server: ServerProcess) -> None:
    tenants = tenants_pb2_grpc.TenantServiceStub(raw_channel)
    admin = bearer(server.admin_key)
    tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="initech"), metadata=admin)
    key = tenants.CreateApiKey(tenants_pb2.CreateApiKeyRequest(tenant="initech"), metadata=admin)
    assert key.tenant == "initech" and key.key_id and key.secret
    embed = embedding_pb2_grpc.EmbeddingServiceStub(raw_channel)
    assert len(embed.Embed(EMBED, metadata=bearer(key.secret)).embeddings) == 1
    tenants.RevokeApiKey(tenants_pb2.RevokeApiKeyRequest(key_id=key.key_id), metadata=admin)
    assert (
        _code(lambda: embed.Embed(EMBED, metadata=bearer(key.secret)))
        == grpc.StatusCode.UNAUTHENTICATED
    )


def test_create_tenant_key_tolerates_an_existing_tenant(server: ServerProcess) -> None:
    """The launcher's helper recognises ALREADY_EXISTS by its code, not by the message."""
    first = server.create_tenant_key("twice")
    second = server.create_tenant_key("twice")
    assert first != second


def test_secrets_are_stored_only_as_hashes(server: ServerProcess, tmp_path_factory) -> None:
    secret = server.create_tenant_key("hashcheck")
    data_dir = Path(server.env["TRANSFERD_DATA_DIR"])
    database = sqlite3.connect(data_dir / "transferd.db")
    try:
        rows = database.execute("SELECT key_id, secret_sha256 FROM api_keys").fetchall()
        dump = "\n".join(database.iterdump())
    finally:
        database.close()
    assert rows and all(len(digest) == 64 for _, digest in rows)
    random_part = secret.split("_", 2)[2]  # after "tdk_<key id>_"; it may itself contain "_"
    assert secret not in dump and random_part not in dump
