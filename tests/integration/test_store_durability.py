"""Stored data is never destroyed, on the real server: a database removed while serving, a head
folder without a row, a full disk. Heads survive each, and `transferd repair` brings them back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from devtools.client import authed_channel, bearer
from devtools.launcher import health_status
from tests.integration.conftest import start_server, wait_for_job
from tests.integration.small_disk import fill, tmpfs
from tests.integration.store_helpers import (
    answers,
    code_of,
    data_dir,
    metric,
    predict_request,
    train,
    train_request,
    version_folders,
)
from transferd.v1 import heads_pb2, heads_pb2_grpc, tenants_pb2, tenants_pb2_grpc


def _repair(data: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "repair"],
        env={**os.environ, "TRANSFERD_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_database_removed_while_serving_stops_serving_and_repair_restores_the_heads(
    tmp_path: Path, model_repo: Path
) -> None:
    server = start_server(tmp_path, model_repo)
    data = data_dir(server)
    key = server.create_tenant_key("acme")
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        assert train(stub, "kept").version == 1
        assert train(stub, "other").version == 1
        before = answers(stub.Predict(predict_request("kept"), timeout=30))
        heads_before = version_folders(data)

        (data / "transferd.db").unlink()
        started = time.monotonic()
        assert _until(
            lambda: health_status(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING,
            timeout=10,
        )
        print(f"NOT_SERVING {time.monotonic() - started:.2f}s after the removal")
        calls = {
            "ListHeads": lambda: stub.ListHeads(heads_pb2.ListHeadsRequest(), timeout=30),
            "Predict": lambda: stub.Predict(predict_request("kept"), timeout=30),
            "TrainHead": lambda: stub.TrainHead(train_request("late"), timeout=30),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, name
            assert "was removed while the server was running" in caught.value.details()
            assert "must be restarted after it is restored" in caught.value.details()
    server.stop()
    assert version_folders(data) == heads_before  # nothing published, nothing deleted

    with pytest.raises(RuntimeError, match="server exited"):
        server.start()  # refuses: a new database beside existing heads
    log = (tmp_path / "server.log").read_text()
    assert "refusing to start" in log and "transferd repair" in log
    assert version_folders(data) == heads_before

    report = _repair(data)
    print(report)
    assert "restored row: acme/kept/1" in report and "restored row: acme/other/1" in report
    assert "created tenant: acme" in report and "create new keys" in report
    assert "nothing to repair" in _repair(data)  # idempotent

    server.start()
    with authed_channel(server.address, server.create_tenant_key("acme")) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        assert answers(stub.Predict(predict_request("kept"), timeout=30)) == before
        assert train(stub, "kept").version == 2
    assert server.stop() == 0


def test_a_folder_without_a_row_is_quarantined_and_repair_brings_it_back(
    tmp_path: Path, model_repo: Path
) -> None:
    server = start_server(tmp_path, model_repo)
    data = data_dir(server)
    key = server.create_tenant_key("acme")
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        assert train(stub, "keep").version == 1
        assert train(stub, "orphan").version == 1
        before = answers(stub.Predict(predict_request("orphan"), timeout=30))
    assert server.stop() == 0
    orphan_bytes = version_folders(data)["acme/orphan/1"]
    with sqlite3.connect(data / "transferd.db") as db:  # the row is lost (an older backup, …)
        db.execute("DELETE FROM heads WHERE name = 'orphan'")

    server.start()
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        assert [h.name for h in stub.ListHeads(heads_pb2.ListHeadsRequest()).heads] == ["keep"]
    kept = list((data / "heads" / ".quarantine").glob("*/acme/orphan/1/head.onnx"))
    assert [p.read_bytes() for p in kept] == [orphan_bytes]  # moved, never deleted
    assert metric(server, "transferd_heads_quarantined") == 1
    assert (
        "quarantined 1 head folders that have no database row"
        in (tmp_path / "server.log").read_text()
    )
    assert server.stop() == 0

    report = _repair(data)
    assert "brought back from quarantine: acme/orphan/1" in report
    server.start()
    with authed_channel(server.address, key) as channel:  # keys survived: the database did
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        assert answers(stub.Predict(predict_request("orphan"), timeout=30)) == before
    assert metric(server, "transferd_heads_quarantined") == 0
    assert server.stop() == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted as the data folder."""
    with tmpfs(tmp_path / "data", 16) as mount:
        yield mount


def test_a_full_disk_is_resource_exhausted_and_passes_when_space_is_freed(
    tmp_path: Path, model_repo: Path, small_disk: Path
) -> None:
    server = start_server(tmp_path, model_repo)
    assert data_dir(server) == small_disk
    key = server.create_tenant_key("acme")
    try:
        with authed_channel(server.address, key) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            assert train(stub, "before").version == 1
            filler = fill(small_disk)
            print(f"filled the disk with {filler.stat().st_size / 2**20:.1f} MiB")

            refusals = []
            with grpc.insecure_channel(server.address) as admin_channel:
                admin = tenants_pb2_grpc.TenantServiceStub(admin_channel)
                for index in range(40):  # enough rows to need new pages
                    created = admin.CreateTenant.future(
                        tenants_pb2.CreateTenantRequest(tenant=f"late-{index}"),
                        metadata=bearer(server.admin_key),
                        timeout=30,
                    )
                    code, message = code_of(created)
                    assert code in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED), message
                    if code != grpc.StatusCode.OK:
                        refusals.append(message)
                        break
            try:
                job = stub.TrainHead(train_request("during"), timeout=30)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
                refusals.append(error.details())
            else:
                final = wait_for_job(stub, job.job_id, timeout=120)[-1]
                assert final.state == heads_pb2.JOB_STATE_FAILED, final
                refusals.append(final.error)
            print(f"refusals: {refusals}")
            assert refusals and all("storage is full" in m for m in refusals), refusals
            assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
            assert len(stub.Predict(predict_request("before"), timeout=30).predictions) == 8
            names = [h.name for h in stub.ListHeads(heads_pb2.ListHeadsRequest()).heads]
            assert names == ["before"]  # nothing half-published

            filler.unlink()
            assert train(stub, "after").version == 1
            assert len(stub.Predict(predict_request("after"), timeout=30).predictions) == 8
    finally:
        server.stop()
