"""Several `transferd serve` replicas on one PostgreSQL database (issue 10), as a client sees them.

Each test creates a fresh database on the local PostgreSQL (`new_database()`, dropped afterwards)
and starts real server processes on it, each on its own ports with its own data directory, all
with the same admin key. Replicas share nothing but the database, so everything a test sees on
one replica after acting on another went through PostgreSQL.

Select them with `-k replicas`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from devtools.client import authed_channel, bearer
from devtools.launcher import ServerProcess, health_status
from tests.integration.conftest import (
    labelled,
    server_process,
    text_request,
    topics,
    train_request,
    wait_for_job,
)
from tests.support.postgres import SERVER, new_database, postgres_url
from tests.support.tcp_proxy import TcpProxy
from transferd.v1 import (
    common_pb2,
    embedding_pb2_grpc,
    heads_pb2,
    heads_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
)

pytestmark = pytest.mark.slow

T = TypeVar("T")

TWO_TOPICS = labelled({k: v for k, v in topics()["train"].items() if k in ("sports", "cooking")})
HELD_OUT = [
    t
    for t, _ in labelled({k: v for k, v in topics()["test"].items() if k in ("sports", "cooking")})
]
# The bound: after DeleteHead or RevokeApiKey answered on one replica, no replica serves
# the head or accepts the key more than 2 s later.
PROPAGATION_S = 2.0
# An mlp job of tens of seconds here (about 0.1 s an epoch of 24 one-example steps): still
# fitting when the test kills its replica, yet short enough to run again from the start.
MEDIUM_MLP = {"kind": "mlp", "params": {"epochs": "300", "batch_size": "1", "hidden": "256"}}
# Short leases, so that a dead replica's job is claimed again within seconds.
SHORT_LEASE = {"TRANSFERD_JOB_LEASE_S": "3"}
# A database outage must be answered, not waited out: the servers' calls to PostgreSQL fail
# fast through the cut proxy, and the recovery must not wait for a restart.
RECOVERY_S = 30.0
FINAL_STATES = (
    heads_pb2.JOB_STATE_SUCCEEDED,
    heads_pb2.JOB_STATE_FAILED,
    heads_pb2.JOB_STATE_CANCELLED,
)


class Cluster:
    """Replicas of one database: started on demand, each in a folder of its own."""

    def __init__(self, tmp: Path, model_repo: Path, database_url: str, stack: ExitStack) -> None:
        self._tmp = tmp
        self._model_repo = model_repo
        self.database_url = database_url
        self.admin_key = secrets.token_urlsafe(24)
        self._stack = stack
        self._count = 0

    def process(self, **env: str) -> ServerProcess:
        """A replica, not started: own ports, own data folder, the shared database and admin key."""
        self._count += 1
        folder = self._tmp / f"replica-{self._count}"
        folder.mkdir()
        settings = {
            "TRANSFERD_DATABASE_URL": self.database_url,
            "TRANSFERD_ADMIN_KEY": self.admin_key,
            "TRANSFERD_DRAIN_DELAY_S": "0",
            **env,
        }
        replica = server_process(folder, self._model_repo, **settings)
        self._stack.callback(_stop, replica)
        return replica

    def start(self, count: int = 1, **env: str) -> list[ServerProcess]:
        """`count` replicas with the same settings, started together (their migrations race
        for the advisory lock, as in a rollout)."""
        replicas = [self.process(**env) for _ in range(count)]
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(ServerProcess.start, replicas))
        return replicas


def _stop(replica: ServerProcess) -> None:
    if replica.process is not None:
        replica.stop()


@contextmanager
def cluster(tmp: Path, model_repo: Path, through: TcpProxy | None = None) -> Iterator[Cluster]:
    """A fresh database and the replicas a test starts on it (stopped, then the database dropped).
    With `through`, the replicas reach PostgreSQL through that proxy."""
    with new_database("transferd_replicas") as name, ExitStack() as stack:
        server = SERVER if through is None else f"{SERVER.partition('@')[0]}@{through.address}"
        yield Cluster(tmp, model_repo, postgres_url(name, server), stack)


def new_key(replica: ServerProcess, tenant: str) -> tenants_pb2.ApiKey:
    """Creates `tenant` and a key for it on `replica`, with the admin key; the key's id and
    secret (create_tenant_key returns only the secret, and revoking needs the id)."""
    with grpc.insecure_channel(replica.address) as channel:
        stub = tenants_pb2_grpc.TenantServiceStub(channel)
        admin = bearer(replica.admin_key)
        stub.CreateTenant(tenants_pb2.CreateTenantRequest(tenant=tenant), metadata=admin)
        key: tenants_pb2.ApiKey = stub.CreateApiKey(
            tenants_pb2.CreateApiKeyRequest(tenant=tenant), metadata=admin
        )
    return key


def revoke(replica: ServerProcess, key_id: str) -> None:
    with grpc.insecure_channel(replica.address) as channel:
        tenants_pb2_grpc.TenantServiceStub(channel).RevokeApiKey(
            tenants_pb2.RevokeApiKeyRequest(key_id=key_id), metadata=bearer(replica.admin_key)
        )


def heads_of(channel: grpc.Channel) -> heads_pb2_grpc.HeadServiceStub:
    return heads_pb2_grpc.HeadServiceStub(channel)


def embed_of(channel: grpc.Channel) -> embedding_pb2_grpc.EmbeddingServiceStub:
    return embedding_pb2_grpc.EmbeddingServiceStub(channel)


def predict(
    stub: heads_pb2_grpc.HeadServiceStub, head: str, version: int = 0
) -> tuple[int, list[tuple[str, list[tuple[str, float]]]]]:
    """The version that answered and every prediction with its scores."""
    reply = stub.Predict(
        heads_pb2.PredictRequest(
            head=head, version=version, inputs=[common_pb2.Input(text=t) for t in HELD_OUT]
        ),
        timeout=30,
    )
    return reply.version, [
        (p.label, [(s.label, s.score) for s in p.scores]) for p in reply.predictions
    ]


def status_of(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status code `call` ends with (OK when it returns)."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def refused_by(call: Callable[[], Any], code: grpc.StatusCode, deadline: float) -> None:
    """Calls `call` until it fails with `code`; fails the test if it still answers after
    `deadline` (time.monotonic()) or if a later call is let through again."""
    while True:
        found = status_of(call)
        if found == code:
            break
        assert found == grpc.StatusCode.OK, f"expected OK until {code}, got {found}"
        late = time.monotonic() - deadline
        assert late <= 0, f"still answered {late:.2f}s after the deadline; expected {code}"
        time.sleep(0.05)
    assert status_of(call) == code, "refused once, then let through again"


def eventually(call: Callable[[], T], seconds: float) -> T:
    """`call`'s first result that is not an UNAVAILABLE error, retried for `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        time.sleep(0.25)


def until_running(stub: heads_pb2_grpc.HeadServiceStub, job_id: str) -> heads_pb2.Job:
    """Follows the job until it fits (so RUNNING: work a kill would interrupt)."""
    for update in stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job_id), timeout=120):
        assert update.state not in FINAL_STATES, update
        if update.state == heads_pb2.JOB_STATE_RUNNING and update.stage == "fit":
            return update
    raise AssertionError("the job's stream ended before it was fitting")


def succeeded(stub: heads_pb2_grpc.HeadServiceStub, job_id: str) -> heads_pb2.Job:
    final = wait_for_job(stub, job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final
    return final


def versions(stub: heads_pb2_grpc.HeadServiceStub, head: str) -> list[int]:
    listed = stub.ListHeads(heads_pb2.ListHeadsRequest(include_all_versions=True), timeout=30)
    return sorted(h.version for h in listed.heads if h.name == head)


def test_replicas_share_tenants_keys_heads_jobs_deletes_and_revokes(
    tmp_path: Path, model_repo: Path
) -> None:
    with cluster(tmp_path, model_repo) as replicas:
        a, b, c = replicas.start(3)
        key = new_key(a, "acme")  # created on A ...
        with (
            authed_channel(a.address, key.secret) as on_a,
            authed_channel(b.address, key.secret) as on_b,
            authed_channel(c.address, key.secret) as on_c,
        ):
            # ... used on B.
            assert len(embed_of(on_b).Embed(text_request(["hello"])).embeddings) == 1

            # Trained on A; the job is visible on every replica; the head serves on B and C
            # with the same answers (one artifact, wherever it was trained).
            job = heads_of(on_a).TrainHead(train_request("topics", TWO_TOPICS))
            final = succeeded(heads_of(on_a), job.job_id)
            assert final.version == 1
            for channel in (on_b, on_c):
                seen = heads_of(channel).GetJob(heads_pb2.GetJobRequest(job_id=job.job_id))
                assert (seen.state, seen.version) == (heads_pb2.JOB_STATE_SUCCEEDED, 1)
            on_each = [predict(heads_of(ch), "topics") for ch in (on_a, on_b, on_c)]
            assert on_each[0][0] == 1 and on_each[1] == on_each[0] and on_each[2] == on_each[0]

            # Deleted on C: A and B, which both hold the head in their caches, stop serving it.
            heads_of(on_c).DeleteHead(heads_pb2.DeleteHeadRequest(head="topics"))
            deadline = time.monotonic() + PROPAGATION_S
            for channel in (on_a, on_b):
                refused_by(
                    lambda ch=channel: predict(heads_of(ch), "topics"),
                    grpc.StatusCode.NOT_FOUND,
                    deadline,
                )

            # Revoked on A: B, which verified the key moments ago, refuses it.
            revoke(a, key.key_id)
            deadline = time.monotonic() + PROPAGATION_S
            for channel in (on_b, on_c):
                refused_by(
                    lambda ch=channel: embed_of(ch).Embed(text_request(["hello"])),
                    grpc.StatusCode.UNAUTHENTICATED,
                    deadline,
                )


def test_a_job_of_a_killed_replica_is_finished_by_another_with_one_version(
    tmp_path: Path, model_repo: Path
) -> None:
    with cluster(tmp_path, model_repo) as replicas:
        # The short lease is set on both: the holder's lease is what has to run out.
        (trainer,) = replicas.start(1, TRANSFERD_TRAINING_WORKERS="1", **SHORT_LEASE)
        key = new_key(trainer, "acme")
        with authed_channel(trainer.address, key.secret) as channel:
            job = heads_of(channel).TrainHead(train_request("slow", TWO_TOPICS, **MEDIUM_MLP))
            until_running(heads_of(channel), job.job_id)
        trainer.kill()  # SIGKILL mid-fit: no chance to release the lease or clean up

        (successor,) = replicas.start(1, TRANSFERD_TRAINING_WORKERS="1", **SHORT_LEASE)
        with authed_channel(successor.address, key.secret) as channel:
            stub = heads_of(channel)
            final = succeeded(stub, job.job_id)
            assert final.version == 1
            assert versions(stub, "slow") == [1]  # exactly one version published
            assert predict(stub, "slow")[0] == 1


def test_two_replicas_training_one_name_publish_versions_n_and_n_plus_1(
    tmp_path: Path, model_repo: Path
) -> None:
    with cluster(tmp_path, model_repo) as replicas:
        a, b = replicas.start(2, TRANSFERD_TRAINING_WORKERS="1")
        key = new_key(a, "acme")
        with (
            authed_channel(a.address, key.secret) as on_a,
            authed_channel(b.address, key.secret) as on_b,
        ):
            # Submitted at the same moment, one on each replica.
            barrier = threading.Barrier(2)

            def submit(channel: grpc.Channel) -> heads_pb2.Job:
                barrier.wait()
                job: heads_pb2.Job = heads_of(channel).TrainHead(
                    train_request("shared", TWO_TOPICS)
                )
                return job

            with ThreadPoolExecutor(2) as pool:
                jobs = list(pool.map(submit, (on_a, on_b)))
            # Each job followed on the other replica than the one it was submitted to.
            watched = zip((on_b, on_a), jobs, strict=True)
            finals = [succeeded(heads_of(ch), job.job_id) for ch, job in watched]
            assert sorted(f.version for f in finals) == [1, 2]
            assert versions(heads_of(on_a), "shared") == [1, 2]
            assert versions(heads_of(on_b), "shared") == [1, 2]


def test_a_database_outage_keeps_serving_refuses_training_and_heals_without_restart(
    tmp_path: Path, model_repo: Path
) -> None:
    host, _, port = SERVER.rpartition("@")[2].rpartition(":")
    with TcpProxy(host, int(port)) as proxy, cluster(tmp_path, model_repo, through=proxy) as db:
        (replica,) = db.start(1, TRANSFERD_TRAINING_WORKERS="1")
        assert replica.process is not None
        pid = replica.process.pid
        key = new_key(replica, "acme")
        with authed_channel(replica.address, key.secret) as channel:
            stub, embed = heads_of(channel), embed_of(channel)
            succeeded(stub, stub.TrainHead(train_request("topics", TWO_TOPICS)).job_id)
            before = predict(stub, "topics")  # the head is loaded, the key seen recently
            embed.Embed(text_request(["warm"]))

            proxy.cut()
            # Serving goes on: Embed, and Predict on the head already used, for seconds.
            for _ in range(10):
                assert len(embed.Embed(text_request(["during the outage"])).embeddings) == 1
                assert predict(stub, "topics") == before
                time.sleep(0.2)
            # Training needs the database: refused at once, saying why.
            with pytest.raises(grpc.RpcError) as caught:
                stub.TrainHead(train_request("topics", TWO_TOPICS), timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "database" in (caught.value.details() or "").lower()
            # Health stays SERVING for Embed (the issue: a database blip does not take serving
            # down).
            assert health_status(replica.address) == health_pb2.HealthCheckResponse.SERVING

            proxy.heal()
            # The replica reconnects by itself: training works again, and publishes version 2.
            job = eventually(
                lambda: stub.TrainHead(train_request("topics", TWO_TOPICS), timeout=30),
                RECOVERY_S,
            )
            assert succeeded(stub, job.job_id).version == 2
            assert predict(stub, "topics")[0] == 2
            assert replica.process.poll() is None and replica.process.pid == pid  # no restart


def test_an_api_only_replica_queues_jobs_that_a_training_replica_runs(
    tmp_path: Path, model_repo: Path
) -> None:
    with cluster(tmp_path, model_repo) as replicas:
        (api,) = replicas.start(1, TRANSFERD_TRAINING_WORKERS="0")
        key = new_key(api, "acme")
        with authed_channel(api.address, key.secret) as channel:
            stub = heads_of(channel)
            job = stub.TrainHead(train_request("topics", TWO_TOPICS))
            assert job.state == heads_pb2.JOB_STATE_QUEUED
            # Nobody trains yet: the API-only replica does not run the job itself.
            time.sleep(3)
            waiting = stub.GetJob(heads_pb2.GetJobRequest(job_id=job.job_id))
            assert waiting.state == heads_pb2.JOB_STATE_QUEUED, waiting

            replicas.start(1, TRANSFERD_TRAINING_WORKERS="1")
            # Watched on the API replica: the progress the training replica writes.
            updates = wait_for_job(stub, job.job_id)
            assert heads_pb2.JOB_STATE_RUNNING in [u.state for u in updates]
            assert updates[-1].state == heads_pb2.JOB_STATE_SUCCEEDED, updates[-1]
            assert predict(stub, "topics")[0] == 1


def test_a_tenant_deleted_and_a_key_expired_on_one_replica_are_gone_on_every_replica(
    tmp_path: Path, model_repo: Path
) -> None:
    with cluster(tmp_path, model_repo) as replicas:
        # A runs no job; B runs the doomed tenant's jobs.
        a = replicas.start(1, TRANSFERD_TRAINING_WORKERS="0")[0]
        b = replicas.start(1)[0]
        gone, kept = new_key(a, "gone"), new_key(a, "kept")
        with grpc.insecure_channel(a.address) as channel:
            brief = tenants_pb2_grpc.TenantServiceStub(channel).CreateApiKey(
                tenants_pb2.CreateApiKeyRequest(tenant="kept", ttl_seconds=4),
                metadata=bearer(a.admin_key),
            )
        with (
            authed_channel(b.address, gone.secret) as gone_on_b,
            authed_channel(b.address, kept.secret) as kept_on_b,
            authed_channel(b.address, brief.secret) as brief_on_b,
        ):
            for channel in (gone_on_b, kept_on_b):
                job = heads_of(channel).TrainHead(train_request("topics", TWO_TOPICS))
                succeeded(heads_of(channel), job.job_id)
            kept_before = predict(heads_of(kept_on_b), "topics")
            b_data = tmp_path / "replica-2" / "data"
            assert (b_data / "heads" / "gone").is_dir()
            # The short key works on B (made on A), until it expires there too.
            assert status_of(lambda: embed_of(brief_on_b).Embed(text_request(["hi"]))) == (
                grpc.StatusCode.OK
            )
            long_job = heads_of(gone_on_b).TrainHead(
                train_request("long", TWO_TOPICS, kind="mlp",
                              params={"epochs": "2000", "batch_size": "1", "hidden": "1024"})
            )  # fmt: skip
            until_running(heads_of(gone_on_b), long_job.job_id)

            with grpc.insecure_channel(a.address) as channel:
                reply = tenants_pb2_grpc.TenantServiceStub(channel).DeleteTenant(
                    tenants_pb2.DeleteTenantRequest(tenant="gone"), metadata=bearer(a.admin_key)
                )
            assert (reply.jobs_stopped, reply.head_versions_deleted) == (1, 1)
            deadline = time.monotonic() + PROPAGATION_S
            refused_by(
                lambda: embed_of(gone_on_b).Embed(text_request(["hi"])),
                grpc.StatusCode.UNAUTHENTICATED,
                deadline,
            )
            assert not (b_data / "heads" / "gone").exists()
            # B's training job stops at its next heartbeat and publishes nothing.
            time.sleep(5)
            with psycopg.connect(replicas.database_url.replace("+psycopg", "")) as db:
                for table in ("api_keys", "heads", "jobs"):
                    query = f"SELECT count(*) FROM {table} WHERE tenant = 'gone'"
                    assert db.execute(query).fetchone() == (0,), table
            assert [p for p in b_data.rglob("*") if "gone" in p.relative_to(b_data).parts] == []
            assert predict(heads_of(kept_on_b), "topics") == kept_before

            wait = brief.expires_at.seconds - time.time() + 0.5
            time.sleep(max(0.0, wait))
            assert status_of(lambda: embed_of(brief_on_b).Embed(text_request(["hi"]))) == (
                grpc.StatusCode.UNAUTHENTICATED
            )
