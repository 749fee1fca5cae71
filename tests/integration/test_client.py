"""transferd.client against the real server: every method, blocking and async, with errors that
keep the status code and the server's message."""

from __future__ import annotations

import asyncio
import io
import threading

import grpc
import numpy as np
import pytest
from PIL import Image

from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import labelled, topics
from tests.support.tcp_proxy import TcpProxy
from transferd.client import AsyncClient, Client, Example, JobStatus, TransferdError
from transferd.client.channel import IDEMPOTENT, service_config

IMAGE_BACKBONE = "efficientnet-lite0"


def _examples() -> list[Example]:
    pairs = labelled({topic: texts[:6] for topic, texts in topics()["train"].items()})
    return [Example(text=text, label=label) for text, label in pairs]


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Client:
    with Client(server.address, api_key=server.admin_key) as client:
        yield client


def test_admin_calls_make_tenants_and_keys_that_work_and_revoke(
    server: ServerProcess, admin: Client
) -> None:
    assert admin.create_tenant("client-admin") == "client-admin"
    with pytest.raises(TransferdError) as again:
        admin.create_tenant("client-admin")
    assert again.value.code == grpc.StatusCode.ALREADY_EXISTS and "client-admin" in (
        again.value.message
    )
    key = admin.create_api_key("client-admin")
    assert key.tenant == "client-admin" and key.key_id and key.secret
    with Client(server.address, api_key=key.secret) as tenant:
        assert BACKBONE in {b.name for b in tenant.backbones()}
        admin.revoke_api_key(key.key_id)
        with pytest.raises(TransferdError) as revoked:
            tenant.backbones()
    assert revoked.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_embed_train_predict_and_manage_heads_blocking(
    server: ServerProcess, admin: Client, sentences: list[str]
) -> None:
    secret = admin.create_api_key(admin.create_tenant("client-sync")).secret
    with Client(server.address, api_key=secret) as client:
        vectors = client.embed(BACKBONE, texts=sentences[:3])
        assert vectors.shape == (3, 384) and vectors.dtype == np.float32
        assert client.embed(IMAGE_BACKBONE, images=[_png()]).shape == (1, 1280)

        job = client.train_head("topics", _examples())
        assert job.status.state in ("QUEUED", "RUNNING")
        seen: list[JobStatus] = []
        final = job.wait(on_progress=seen.append)
        assert final.state == "SUCCEEDED", final.error
        assert seen[-1] == final and len(seen) >= 2 and final.version == 1

        test = labelled(topics()["test"])
        predictions = client.predict("topics", texts=[t for t, _ in test], top_k=2)
        accuracy = np.mean(
            [p.label == label for p, (_, label) in zip(predictions, test, strict=True)]
        )
        assert accuracy >= 0.7 and all(len(p.scores) == 2 for p in predictions)
        by_vector = client.predict("topics", embeddings=client.embed(BACKBONE, texts=[test[0][0]]))
        assert by_vector[0].label == predictions[0].label

        head = client.head("topics")
        assert (head.name, head.version, head.backbone, head.task) == (
            "topics", 1, BACKBONE, "classification"
        )  # fmt: skip
        assert sorted(head.labels) == sorted(topics()["train"]) and "accuracy" in head.metrics
        assert [h.name for h in client.heads()] == ["topics"]
        client.delete_head("topics")
        with pytest.raises(TransferdError) as gone:
            client.head("topics")
        assert gone.value.code == grpc.StatusCode.NOT_FOUND and "topics" in gone.value.message


def test_errors_keep_the_code_and_the_servers_message(server: ServerProcess, admin: Client) -> None:
    secret = admin.create_api_key(admin.create_tenant("client-errors")).secret
    with Client(server.address, api_key=secret) as client:
        with pytest.raises(TransferdError) as unknown:
            client.embed("no-such-backbone", texts=["hello"])
        assert unknown.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "backbone" in unknown.value.message and BACKBONE in unknown.value.message
        with pytest.raises(ValueError, match="exactly one of"):
            client.predict("topics")
    with Client(server.address, api_key="not-a-key") as stranger:
        with pytest.raises(TransferdError) as refused:
            stranger.backbones()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_tenants_and_keys_are_listed_expire_and_delete_blocking_and_async(
    server: ServerProcess, admin: Client
) -> None:
    admin.create_tenant("client-life")
    lasting = admin.create_api_key("client-life")
    brief = admin.create_api_key("client-life", ttl_seconds=600)
    assert lasting.expires_at is None and brief.expires_at is not None and brief.created_at
    assert 599 <= (brief.expires_at - brief.created_at).total_seconds() <= 600
    with Client(server.address, api_key=lasting.secret) as tenant:
        tenant.backbones()
    keys = {key.key_id: key for key in admin.list_api_keys("client-life")}
    assert set(keys) == {lasting.key_id, brief.key_id}
    assert keys[lasting.key_id].last_used_at is not None and keys[brief.key_id].last_used_at is None
    assert not any(key.expired for key in keys.values())
    assert "client-life" in {t.name for t in admin.list_tenants()}

    async def delete(admin_key: str) -> None:
        async with AsyncClient(server.address, api_key=admin_key) as admin_async:
            assert [k.key_id for k in await admin_async.list_api_keys("client-life")] == [
                lasting.key_id, brief.key_id,
            ]  # fmt: skip
            deleted = await admin_async.delete_tenant("client-life")
            assert (deleted.keys_revoked, deleted.jobs_stopped) == (2, 0)
            assert "client-life" not in {t.name for t in await admin_async.list_tenants()}

    asyncio.run(delete(server.admin_key))
    with (
        Client(server.address, api_key=lasting.secret) as tenant,
        pytest.raises(TransferdError) as refused,
    ):
        tenant.backbones()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(TransferdError) as missing:
        admin.list_api_keys("client-life")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_the_async_client_has_the_same_methods(server: ServerProcess, admin: Client) -> None:
    async def scenario(admin_key: str) -> None:
        async with AsyncClient(server.address, api_key=admin_key) as admin_async:
            await admin_async.create_tenant("client-async")
            key = await admin_async.create_api_key("client-async")
        async with AsyncClient(server.address, api_key=key.secret) as client:
            assert (await client.embed(BACKBONE, texts=["a goal", "a cake"])).shape == (2, 384)
            job = await client.train_head("topics", _examples(), kind="logistic_regression")
            final = await job.wait()
            assert final.state == "SUCCEEDED", final.error
            [prediction] = await client.predict("topics", texts=["the striker scored twice"])
            assert prediction.label == "sports"
            assert (await client.head("topics")).kind == "logistic_regression"
            assert [h.name for h in await client.heads()] == ["topics"]
            await client.delete_head("topics")
            with pytest.raises(TransferdError) as gone:
                await client.head("topics")
            assert gone.value.code == grpc.StatusCode.NOT_FOUND
        async with AsyncClient(server.address, api_key=server.admin_key) as admin_async:
            await admin_async.revoke_api_key(key.key_id)

    asyncio.run(scenario(server.admin_key))


def test_unavailable_is_retried_for_embed_and_not_for_train_head(
    server: ServerProcess, admin: Client
) -> None:
    """The link to the server is down for 0.3 s: Embed rides it out on the retry policy, while
    TrainHead (which must not run twice) fails at once with UNAVAILABLE."""
    secret = admin.create_api_key(admin.create_tenant("client-retries")).secret
    host, port = server.address.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy, Client(proxy.address, api_key=secret) as client:
        client.backbones()  # connected
        proxy.cut()
        with pytest.raises(TransferdError) as refused:
            client.train_head("never", _examples())
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        healing = threading.Timer(0.3, proxy.heal)
        healing.start()
        try:
            assert client.embed(BACKBONE, texts=["after the outage"]).shape == (1, 384)
        finally:
            healing.join()
        assert client.heads() == []  # the refused TrainHead never reached the server


def test_only_calls_safe_to_repeat_are_retried() -> None:
    """The service config retries UNAVAILABLE for reads, Embed and Predict; never for TrainHead,
    DeleteHead or the admin calls, which a repeat could do twice."""
    retried = {method for methods in IDEMPOTENT.values() for method in methods}
    assert {"Embed", "Predict", "GetHead", "WatchJob"} <= retried
    assert not {"TrainHead", "DeleteHead", "CancelJob", "CreateApiKey", "DeleteTenant"} & retried
    assert '"retryableStatusCodes": ["UNAVAILABLE"]' in service_config()


# Minutes of mlp training: still running when the test cancels it, whatever the machine.
LONG = {"epochs": "2000", "batch_size": "1", "hidden": "1024"}


def test_jobs_are_found_refreshed_and_cancelled_blocking_and_async(
    server: ServerProcess, admin: Client
) -> None:
    secret = admin.create_api_key(admin.create_tenant("client-jobs")).secret
    with Client(server.address, api_key=secret) as client:
        job = client.train_head("slow", _examples(), kind="mlp", params=LONG)
        found = client.job(job.job_id)
        assert found.job_id == job.job_id and found.status.head == "slow"
        assert found.refresh().state in ("QUEUED", "RUNNING")
        assert found.cancel().state in ("CANCELLED", "RUNNING")  # RUNNING: stopping
        final = found.wait()
        assert final.state == "CANCELLED" and client.heads() == []

    async def scenario() -> None:
        async with AsyncClient(server.address, api_key=secret) as client:
            assert BACKBONE in {b.name for b in await client.backbones()}
            job = await client.train_head("slow", _examples(), kind="mlp", params=LONG)
            found = await client.job(job.job_id)
            assert (await found.refresh()).state in ("QUEUED", "RUNNING")
            await found.cancel()
            assert (await found.wait()).state == "CANCELLED"
            vector = await client.embed(IMAGE_BACKBONE, images=[_png()])
            assert vector.shape == (1, 1280)

    asyncio.run(scenario())
