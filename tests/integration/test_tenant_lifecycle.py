"""Tenant lifecycle, key expiry and listing, and the audit log, against the real server."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

from devtools.client import authed_channel, bearer
from devtools.launcher import ServerProcess
from service import audit
from tests.integration.conftest import start_server, text_request, train_request, wait_for_job
from tests.integration.scrape import server_metrics, value
from tests.integration.test_job_lifecycle import HELD_OUT, LONG, TWO_TOPICS, until_fitting
from transferd.v1 import (
    common_pb2,
    embedding_pb2_grpc,
    heads_pb2,
    heads_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)

EMBED = text_request(["a sentence to embed"])
# A name no other byte of the data directory could hold by chance.
GONE = "tenant-to-forget-q7x"


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def _audit_lines(tmp_path: Path) -> list[dict]:
    """The audit log: the JSON lines of the server's log (its other lines are not JSON)."""
    text = (tmp_path / "server.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _random_part(secret: str) -> str:
    """What follows `tdk_<key id>_` in a secret: 43 random characters (which may hold `_`)."""
    random = secret.split("_", 2)[2]
    assert len(random) >= 40, secret
    return random


def _rows_of(data_dir: Path, tenant: str) -> dict[str, int]:
    """Rows that name `tenant`, per table of the server's SQLite database."""
    with sqlite3.connect(data_dir / "transferd.db") as db:
        counts = {"tenants": db.execute("SELECT count(*) FROM tenants WHERE name=?", (tenant,))}
        for table in ("api_keys", "heads", "jobs"):
            counts[table] = db.execute(f"SELECT count(*) FROM {table} WHERE tenant=?", (tenant,))
        return {table: cursor.fetchone()[0] for table, cursor in counts.items()}


def _files_of(data_dir: Path, tenant: str) -> list[Path]:
    """Every path under the data directory that belongs to `tenant` (a path part named so)."""
    return [path for path in data_dir.rglob("*") if tenant in path.relative_to(data_dir).parts]


def _embed(server: ServerProcess, key: str) -> grpc.StatusCode:
    with authed_channel(server.address, key) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        try:
            stub.Embed(EMBED, timeout=30)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _predict(server: ServerProcess, key: str, head: str) -> heads_pb2.PredictResponse:
    with authed_channel(server.address, key) as channel:
        return heads_pb2_grpc.HeadServiceStub(channel).Predict(
            heads_pb2.PredictRequest(head=head, inputs=[common_pb2.Input(text=t) for t in HELD_OUT])
        )


def test_deleting_a_tenant_while_its_job_runs_leaves_nothing_of_it(
    tmp_path: Path, model_repo: Path
) -> None:
    server = start_server(tmp_path, model_repo, TRANSFERD_TRAINING_WORKERS="1")
    data_dir = tmp_path / "data"
    try:
        admin = tenants_pb2_grpc.TenantServiceStub(grpc.insecure_channel(server.address))
        as_admin = bearer(server.admin_key)
        gone_key, kept_key = server.create_tenant_key(GONE), server.create_tenant_key("kept")
        for key in (gone_key, kept_key):
            with authed_channel(server.address, key) as channel:
                stub = heads_pb2_grpc.HeadServiceStub(channel)
                job = stub.TrainHead(train_request("topics", TWO_TOPICS))
                assert wait_for_job(stub, job.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
        kept_before = _predict(server, kept_key, "topics")
        assert _files_of(data_dir, GONE)

        with authed_channel(server.address, gone_key) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            long_job = stub.TrainHead(train_request("long", TWO_TOPICS, **LONG))
            until_fitting(
                stub.WatchJob(heads_pb2.WatchJobRequest(job_id=long_job.job_id), timeout=120)
            )
            started = time.monotonic()
            reply = admin.DeleteTenant(
                tenants_pb2.DeleteTenantRequest(tenant=GONE), metadata=as_admin, timeout=60
            )
            took = time.monotonic() - started
        assert (reply.keys_revoked, reply.jobs_stopped, reply.head_versions_deleted) == (1, 1, 1)
        assert took < 20, f"DeleteTenant took {took:.1f}s: the running job was not stopped"

        # Answered: nothing of the tenant is served, stored or on disk, now and a while later
        # (the stopped job publishes nothing afterwards).
        for _ in range(2):
            assert _embed(server, gone_key) == grpc.StatusCode.UNAUTHENTICATED
            assert _rows_of(data_dir, GONE) == {
                "tenants": 0,
                "api_keys": 0,
                "heads": 0,
                "jobs": 0,
            }
            assert _files_of(data_dir, GONE) == []
            # Not even in the database's free pages or its write-ahead log.
            for path in data_dir.rglob("*"):
                assert not path.is_file() or GONE.encode() not in path.read_bytes(), path
            time.sleep(3)
        listed = admin.ListTenants(tenants_pb2.ListTenantsRequest(), metadata=as_admin)
        assert [t.tenant for t in listed.tenants] == ["kept"]
        assert listed.tenants[0].created_at.seconds > 0

        # Another tenant is untouched.
        assert _predict(server, kept_key, "topics") == kept_before
        assert _embed(server, kept_key) == grpc.StatusCode.OK

        # Gone means gone: deleting again is NOT_FOUND, and the name can start afresh.
        again = tenants_pb2.DeleteTenantRequest(tenant=GONE)
        assert (
            _code(lambda: admin.DeleteTenant(again, metadata=as_admin)) == grpc.StatusCode.NOT_FOUND
        )
        fresh_key = server.create_tenant_key(GONE)
        with authed_channel(server.address, fresh_key) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            assert list(stub.ListHeads(heads_pb2.ListHeadsRequest()).heads) == []
            old_job = heads_pb2.GetJobRequest(job_id=long_job.job_id)
            assert _code(lambda: stub.GetJob(old_job)) == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop()
    deletions = [line for line in _audit_lines(tmp_path) if line["event"] == "admin.DeleteTenant"]
    assert [(d["tenant"], d["outcome"]) for d in deletions] == [
        (GONE, "OK"),
        (GONE, "NOT_FOUND"),
    ]
    assert deletions[0]["head_versions_deleted"] == 1 and deletions[0]["jobs_stopped"] == 1


def test_keys_expire_list_without_secrets_and_are_capped(tmp_path: Path, model_repo: Path) -> None:
    server = start_server(tmp_path, model_repo, TRANSFERD_MAX_KEYS_PER_TENANT="3")
    try:
        with grpc.insecure_channel(server.address) as channel:
            admin = tenants_pb2_grpc.TenantServiceStub(channel)
            as_admin = bearer(server.admin_key)
            admin.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="acme"), metadata=as_admin)

            def create(ttl: int) -> tenants_pb2.ApiKey:
                request = tenants_pb2.CreateApiKeyRequest(tenant="acme", ttl_seconds=ttl)
                return admin.CreateApiKey(request, metadata=as_admin)

            short, lasting = create(3), create(0)
            assert short.HasField("expires_at") and not lasting.HasField("expires_at")
            assert short.expires_at.seconds - short.created_at.seconds == 3
            assert _embed(server, short.secret) == grpc.StatusCode.OK
            assert _embed(server, lasting.secret) == grpc.StatusCode.OK

            # At most 3 live keys; a revoked one does not count.
            third = create(0)
            assert _code(lambda: create(0)) == grpc.StatusCode.RESOURCE_EXHAUSTED
            admin.RevokeApiKey(
                tenants_pb2.RevokeApiKeyRequest(key_id=third.key_id), metadata=as_admin
            )
            fourth = create(0)
            bad = tenants_pb2.CreateApiKeyRequest(tenant="acme", ttl_seconds=-5)
            with pytest.raises(grpc.RpcError) as caught:
                admin.CreateApiKey(bad, metadata=as_admin)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "ttl_seconds" in (caught.value.details() or "")

            time.sleep(max(0.0, short.expires_at.seconds - time.time()) + 1.0)
            assert _embed(server, short.secret) == grpc.StatusCode.UNAUTHENTICATED
            assert _embed(server, lasting.secret) == grpc.StatusCode.OK
            # The expired key no longer counts either.
            create(0)

            listed = admin.ListApiKeys(
                tenants_pb2.ListApiKeysRequest(tenant="acme"), metadata=as_admin
            )
            by_id = {key.key_id: key for key in listed.keys}
            assert third.key_id not in by_id and len(by_id) == 4
            assert by_id[short.key_id].expired and not by_id[lasting.key_id].expired
            assert by_id[short.key_id].expires_at == short.expires_at
            used = by_id[lasting.key_id].last_used_at
            assert used.seconds % 60 == 0 and abs(time.time() - used.seconds) < 120
            assert not by_id[fourth.key_id].HasField("last_used_at")
            with_revoked = admin.ListApiKeys(
                tenants_pb2.ListApiKeysRequest(tenant="acme", include_revoked=True),
                metadata=as_admin,
            )
            assert {k.key_id for k in with_revoked.keys if k.HasField("revoked_at")} == {
                third.key_id
            }
            # Never a secret, nor anything of one, on the wire.
            wire = listed.SerializeToString() + with_revoked.SerializeToString()
            for secret in (short.secret, lasting.secret, third.secret, fourth.secret):
                assert secret.encode() not in wire
                assert _random_part(secret).encode() not in wire
            unknown = tenants_pb2.ListApiKeysRequest(tenant="nobody")
            assert (
                _code(lambda: admin.ListApiKeys(unknown, metadata=as_admin))
                == grpc.StatusCode.NOT_FOUND
            )
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    for secret in (short.secret, lasting.secret, third.secret, fourth.secret):
        assert _random_part(secret) not in log


def test_audit_lines_for_admin_calls_refusals_and_heads(tmp_path: Path, model_repo: Path) -> None:
    server = start_server(tmp_path, model_repo)
    try:
        with grpc.insecure_channel(server.address) as channel:
            admin = tenants_pb2_grpc.TenantServiceStub(channel)
            as_admin = bearer(server.admin_key)
            admin.CreateTenant(tenants_pb2.CreateTenantRequest(tenant="acme"), metadata=as_admin)
            key = admin.CreateApiKey(
                tenants_pb2.CreateApiKeyRequest(tenant="acme"), metadata=as_admin
            )
            expiring = admin.CreateApiKey(
                tenants_pb2.CreateApiKeyRequest(tenant="acme", ttl_seconds=1), metadata=as_admin
            )
            revoked = admin.CreateApiKey(
                tenants_pb2.CreateApiKeyRequest(tenant="acme"), metadata=as_admin
            )
            admin.RevokeApiKey(
                tenants_pb2.RevokeApiKeyRequest(key_id=revoked.key_id), metadata=as_admin
            )
            admin.ListApiKeys(tenants_pb2.ListApiKeysRequest(tenant="acme"), metadata=as_admin)
            # A tenant's key on the admin service: audited as an admin call, refused.
            denied = tenants_pb2.CreateTenantRequest(tenant="intruder")
            assert (
                _code(lambda: admin.CreateTenant(denied, metadata=bearer(key.secret)))
                == grpc.StatusCode.PERMISSION_DENIED
            )
            time.sleep(1.5)
            embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            forged = f"tdk_{key.key_id}_{'x' * 43}"
            for metadata in [(), bearer("not-a-key"), bearer(forged), bearer(revoked.secret),
                             bearer(expiring.secret)]:  # fmt: skip
                assert _code(lambda m=metadata: embed.Embed(EMBED, metadata=m)) == (
                    grpc.StatusCode.UNAUTHENTICATED
                )
        with authed_channel(server.address, key.secret) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            job = stub.TrainHead(train_request("topics", TWO_TOPICS))
            assert wait_for_job(stub, job.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
            stub.DeleteHead(heads_pb2.DeleteHeadRequest(head="topics"))
            missing = heads_pb2.DeleteHeadRequest(head="topics")
            assert _code(lambda: stub.DeleteHead(missing)) == grpc.StatusCode.NOT_FOUND
        refused = server_metrics(server)
        # A flood from one address: counted, but only the first few written.
        with grpc.insecure_channel(server.address) as channel:
            embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            for _ in range(30):
                _code(lambda: embed.Embed(EMBED, metadata=bearer("flood")))
        flooded = server_metrics(server)
    finally:
        server.stop()
    # The deleted head kept its version number only: no card, no artifact.
    with sqlite3.connect(tmp_path / "data" / "transferd.db") as db:
        assert db.execute("SELECT card_json, onnx_sha256 FROM heads").fetchall() == [("", None)]
        assert db.execute("SELECT count(*) FROM head_blobs").fetchone() == (0,)
    lines = _audit_lines(tmp_path)
    for line in lines:
        assert {"time", "event", "tenant", "key_id", "peer", "outcome"} <= line.keys(), line
    events = [(line["event"], line["outcome"]) for line in lines]
    for expected in [
        ("admin.CreateTenant", "OK"),
        ("admin.CreateApiKey", "OK"),
        ("admin.RevokeApiKey", "OK"),
        ("admin.ListApiKeys", "OK"),
        ("admin.CreateTenant", "PERMISSION_DENIED"),
        ("head.publish", "OK"),
        ("head.delete", "OK"),
        ("head.delete", "NOT_FOUND"),
    ]:
        assert expected in events, expected
    created = [line for line in lines if line["event"] == "admin.CreateApiKey"]
    assert [line["new_key_id"] for line in created] == [key.key_id, expiring.key_id, revoked.key_id]
    assert all(line["key_id"] == "admin" and line["peer"].startswith("ipv") for line in created)
    publish = next(line for line in lines if line["event"] == "head.publish")
    assert (publish["tenant"], publish["head"], publish["version"]) == ("acme", "topics", 1)
    reasons = [line["reason"] for line in lines if line["event"] == "auth.refused"][:5]
    assert reasons == ["missing", "unknown", "unknown", "revoked", "expired"]
    for reason in ("missing", "unknown", "revoked", "expired"):
        assert value(refused, "transferd_auth_refused_total", reason=reason) >= 1, reason
    # The flood: 30 more refusals counted; of the 35 from this address, BURST lines written.
    assert (
        value(flooded, "transferd_auth_refused_total")
        - value(refused, "transferd_auth_refused_total")
        == 30
    )
    assert len([line for line in lines if line["event"] == "auth.refused"]) == audit.BURST
    assert [line["event"] for line in lines].count("auth.refused.rate_limited") == 1
    text = (tmp_path / "server.log").read_text()
    for secret in (key.secret, expiring.secret, revoked.secret, server.admin_key):
        assert secret not in text
