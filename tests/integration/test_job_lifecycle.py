"""Jobs across a crash and a shutdown: the job's stored request runs again after the restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.integration.conftest import labelled, start_server, topics, train_request, wait_for_job
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc

TWO_TOPICS = labelled({k: v for k, v in topics()["train"].items() if k in ("sports", "cooking")})
HELD_OUT = [
    t
    for t, _ in labelled({k: v for k, v in topics()["test"].items() if k in ("sports", "cooking")})
]
# Minutes of mlp training (tens of thousands of steps of a few ms): a job that is still running
# when the test stops the server, whatever the machine.
LONG = {"kind": "mlp", "params": {"epochs": "2000", "batch_size": "1", "hidden": "1024"}}


def until_fitting(watch: Iterator[heads_pb2.Job]) -> heads_pb2.Job:
    """Follows a WatchJob stream until the job is fitting (so RUNNING); fails if it ends first.
    The stream's own deadline bounds the wait."""
    for update in watch:
        if update.stage == "fit":
            assert update.state == heads_pb2.JOB_STATE_RUNNING, update
            return update
        assert update.state in (heads_pb2.JOB_STATE_QUEUED, heads_pb2.JOB_STATE_RUNNING), update
    raise AssertionError("the job's stream ended before it was fitting")


def _predict(stub: heads_pb2_grpc.HeadServiceStub) -> list[tuple[str, list[tuple[str, float]]]]:
    reply = stub.Predict(
        heads_pb2.PredictRequest(head="kept", inputs=[common_pb2.Input(text=t) for t in HELD_OUT])
    )
    return [(p.label, [(s.label, s.score) for s in p.scores]) for p in reply.predictions]


def test_crash_during_training_leaves_no_stuck_job_and_intact_heads(
    tmp_path: Path, model_repo: Path
) -> None:
    server = start_server(
        tmp_path, model_repo, TRANSFERD_TRAINING_WORKERS="1", TRANSFERD_MAX_JOBS_PER_TENANT="2"
    )
    key = server.create_tenant_key("acme")
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        first = stub.TrainHead(train_request("kept", TWO_TOPICS))
        assert wait_for_job(stub, first.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
        before = _predict(stub)

        # A job that trains for minutes, then one waiting behind it.
        long_job = stub.TrainHead(train_request("kept", TWO_TOPICS, **LONG))
        queued = stub.TrainHead(train_request("other", TWO_TOPICS))
        with pytest.raises(grpc.RpcError) as caught:  # acme now has 2 active jobs: the limit
            stub.TrainHead(train_request("third", TWO_TOPICS))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        cancelled = stub.CancelJob(heads_pb2.CancelJobRequest(job_id=queued.job_id))
        assert cancelled.state == heads_pb2.JOB_STATE_CANCELLED

        # Killed while it fits: minutes of work left, far more than the moment to the kill.
        until_fitting(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=long_job.job_id), timeout=120))
    server.kill()  # SIGKILL: no chance to clean up

    server.start()  # same ports, same data folder, same admin key
    with authed_channel(server.address, key) as channel:  # the key survived the crash
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        # The interrupted job runs again from its stored request (it would take minutes).
        rerun = until_fitting(
            stub.WatchJob(heads_pb2.WatchJobRequest(job_id=long_job.job_id), timeout=120)
        )
        assert rerun.version == 0 and rerun.error == ""
        cancelled_rerun = stub.CancelJob(heads_pb2.CancelJobRequest(job_id=long_job.job_id))
        assert cancelled_rerun.state == heads_pb2.JOB_STATE_CANCELLED, cancelled_rerun
        assert (
            stub.GetJob(heads_pb2.GetJobRequest(job_id=queued.job_id)).state
            == heads_pb2.JOB_STATE_CANCELLED
        )
        assert stub.GetJob(heads_pb2.GetJobRequest(job_id=first.job_id)).version == 1

        every = stub.ListHeads(heads_pb2.ListHeadsRequest(include_all_versions=True)).heads
        assert [(h.name, h.version) for h in every] == [("kept", 1)]
        assert _predict(stub) == before  # exactly as before the crash

        again = stub.TrainHead(train_request("kept", TWO_TOPICS))
        assert wait_for_job(stub, again.job_id)[-1].version == 2
    assert server.stop() == 0


def test_shutdown_hands_running_jobs_back_and_the_restart_runs_them(
    tmp_path: Path, model_repo: Path
) -> None:
    """SIGTERM stops the job being fitted and puts it back in the queue (its WatchJob stream
    shows that, then ends UNAVAILABLE: watch again); after the restart it runs again."""
    server: ServerProcess = start_server(tmp_path, model_repo, TRANSFERD_DRAIN_DELAY_S="0")
    key = server.create_tenant_key("acme")
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        job = stub.TrainHead(train_request("h", TWO_TOPICS, **LONG))
        watch = stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), timeout=120)
        until_fitting(watch)  # running, with minutes of work left
        assert server.stop() == 0
        updates = []
        with pytest.raises(grpc.RpcError) as ended:
            for update in watch:
                updates.append(update)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
    assert "watch it again" in (ended.value.details() or "")
    last = updates[-1]
    assert (last.state, last.stage, last.error) == (heads_pb2.JOB_STATE_QUEUED, "requeued", "")

    server.start()
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        until_fitting(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), timeout=120))
        cancelled = stub.CancelJob(heads_pb2.CancelJobRequest(job_id=job.job_id))
        assert cancelled.state == heads_pb2.JOB_STATE_CANCELLED, cancelled
    assert server.stop() == 0
