"""A full disk while a job trains, against the real server on a small tmpfs: the job ends (never
RUNNING for ever), nothing answers INTERNAL, the server stays up, and once space is freed the
job's row is final and the tenant's job slot is free."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.client import authed_channel
from devtools.launcher import health_status
from tests.integration.conftest import labelled, start_server, topics, train_request, wait_for_job
from tests.integration.small_disk import fill, tmpfs
from transferd.v1 import heads_pb2, heads_pb2_grpc

ALL_TOPICS = labelled(topics()["train"])
TWO_TOPICS = [pair for pair in ALL_TOPICS if pair[1] in ("sports", "cooking")]
SLOW = {"kind": "mlp", "params": {"epochs": "300", "batch_size": "8", "hidden": "64"}}
QUICK = {"params": {"C": "1"}}
DISK_MB = 24
SERVING = 1  # grpc.health.v1 HealthCheckResponse.SERVING
TERMINAL = {
    heads_pb2.JOB_STATE_SUCCEEDED,
    heads_pb2.JOB_STATE_FAILED,
    heads_pb2.JOB_STATE_CANCELLED,
}
ALLOWED_REFUSALS = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK_MB tmpfs, unmounted afterwards."""
    with tmpfs(tmp_path / "disk", DISK_MB) as mount:
        yield mount


def stored_state(db: Path, job_id: str) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        row = connection.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return row[0]


def test_a_full_disk_leaves_no_stuck_job_and_no_held_slot(
    tmp_path: Path, model_repo: Path, small_disk: Path
) -> None:
    data = small_disk / "data"
    server = start_server(
        tmp_path, model_repo, TRANSFERD_DATA_DIR=str(data),
        TRANSFERD_TRAINING_WORKERS="1", TRANSFERD_MAX_JOBS_PER_TENANT="1",
    )  # fmt: skip
    try:
        key = server.create_tenant_key("acme")
        with authed_channel(server.address, key) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            job = stub.TrainHead(train_request("h", ALL_TOPICS, **SLOW))
            deadline = time.monotonic() + 120
            while stub.GetJob(heads_pb2.GetJobRequest(job_id=job.job_id)).stage != "fit":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            filler = fill(small_disk)  # while the job trains: its publish and writes must fail

            deadline = time.monotonic() + 120
            while (got := stub.GetJob(heads_pb2.GetJobRequest(job_id=job.job_id))).state not in (
                TERMINAL
            ):
                assert time.monotonic() < deadline, f"job stuck: {got}"
                time.sleep(0.2)
            assert got.state == heads_pb2.JOB_STATE_FAILED and got.version == 0, got
            assert "full" in got.error, got.error  # the reason, not an internal error

            # Still full: a new job is refused clearly, or accepted and ends; never INTERNAL.
            try:
                extra = stub.TrainHead(train_request("h2", TWO_TOPICS, **QUICK))
            except grpc.RpcError as error:
                assert error.code() in ALLOWED_REFUSALS, (error.code(), error.details())
                print(f"TrainHead on a full disk: {error.code().name}: {error.details()}")
            else:
                assert wait_for_job(stub, extra.job_id, timeout=120)[-1].state in TERMINAL
            assert health_status(server.address) == SERVING

            filler.unlink()  # space is back: the final state lands, the slot is free
            deadline = time.monotonic() + 60
            while (state := stored_state(data / "transferd.db", job.job_id)) != "failed":
                assert time.monotonic() < deadline, f"the job's row stays {state}"
                time.sleep(0.5)
            after = stub.TrainHead(train_request("h", TWO_TOPICS, **QUICK))
            final = wait_for_job(stub, after.job_id, timeout=120)[-1]
            assert final.state == heads_pb2.JOB_STATE_SUCCEEDED and final.version == 1, final
    finally:
        code = server.stop()
    log = (tmp_path / "server.log").read_text()
    # The final state's write failed while the disk was full and landed once space was freed.
    assert "final state not stored (attempt 1" in log and "final state stored after" in log
    assert "Future exception was never retrieved" not in log
    assert code == 0
