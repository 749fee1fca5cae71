"""Stored heads on the real server: the head cache's byte budget, quotas, full-match names, a head
deleted mid-call (NOT_FOUND) and a damaged head file (healed from the database's copy; with that
damaged too, DATA_LOSS, listed as damaged)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.client import authed_channel, bearer
from devtools.launcher import ServerProcess
from service.store.database import Database
from tests.integration.conftest import start_server
from tests.integration.store_helpers import (
    code_of,
    data_dir,
    metric,
    predict_request,
    train,
    train_request,
)
from tests.support.heads_db import damage_database_copy
from transferd.v1 import heads_pb2, heads_pb2_grpc, tenants_pb2, tenants_pb2_grpc

CACHE_MB = 8
MAX_HEADS = 4
MAX_VERSIONS = 2


@pytest.fixture(scope="module")
def store_server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator:
    process = start_server(
        tmp_path_factory.mktemp("store"),
        model_repo,
        TRANSFERD_HEAD_CACHE_MB=str(CACHE_MB),
        TRANSFERD_MAX_EXAMPLES_PER_JOB="3000",
        TRANSFERD_MAX_HEADS_PER_TENANT=str(MAX_HEADS),
        TRANSFERD_MAX_VERSIONS_PER_HEAD=str(MAX_VERSIONS),
    )
    yield process
    process.stop()


def _stub(server: ServerProcess, tenant: str) -> Iterator[heads_pb2_grpc.HeadServiceStub]:
    with authed_channel(server.address, server.create_tenant_key(tenant)) as channel:
        yield heads_pb2_grpc.HeadServiceStub(channel)


def test_the_head_cache_stays_within_its_byte_budget(store_server: ServerProcess) -> None:
    for stub in _stub(store_server, "cache"):
        # knn heads of 400 examples: ~0.6 MB of ONNX, ~3.8 MB estimated once loaded.
        for index in range(4):
            assert train(stub, f"knn{index}", n=400, kind="knn", seed=index).version == 1
        budget = CACHE_MB * 1024 * 1024
        seen = []
        for _round in range(2):
            for index in range(4):
                stub.Predict(predict_request(f"knn{index}"), timeout=60)
                seen.append(metric(store_server, "transferd_head_cache_bytes"))
                assert metric(store_server, "transferd_heads_cached") <= 2
        print(f"cached bytes after each Predict (MiB): {[round(b / 2**20, 2) for b in seen]}")
        assert max(seen) <= budget
        assert min(seen) > 2 * 2**20  # at least one knn head is cached after each call


def test_quotas_on_heads_and_versions(store_server: ServerProcess) -> None:
    for stub in _stub(store_server, "quota"):
        for _ in range(MAX_VERSIONS):
            assert train(stub, "q0").state == heads_pb2.JOB_STATE_SUCCEEDED
        for index in range(1, MAX_HEADS):
            assert train(stub, f"q{index}").state == heads_pb2.JOB_STATE_SUCCEEDED
        for head, wording in (
            ("q0", "versions, the most allowed is 2"),
            ("q9", "heads, the most allowed is 4"),
        ):
            # Refused when queued, or (until the job side checks first) failed at publishing.
            try:
                job = train(stub, head)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert wording in (error.details() or "")
            else:
                assert job.state == heads_pb2.JOB_STATE_FAILED and wording in job.error, job
        listed = stub.ListHeads(heads_pb2.ListHeadsRequest(include_all_versions=True)).heads
        assert sorted((h.name, h.version) for h in listed) == [
            ("q0", 1), ("q0", 2), ("q1", 1), ("q2", 1), ("q3", 1)
        ]  # fmt: skip
        stub.DeleteHead(heads_pb2.DeleteHeadRequest(head="q0", version=1))
        assert train(stub, "q0").version == 3  # a deleted version frees its place


def test_names_with_a_trailing_newline_are_refused(store_server: ServerProcess) -> None:
    for stub in _stub(store_server, "names"):
        for method, request in (
            (stub.TrainHead, train_request("model\n")),
            (stub.GetHead, heads_pb2.GetHeadRequest(head="model\n")),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                method(request, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details().startswith("head:")
    with grpc.insecure_channel(store_server.address) as channel:
        admin = tenants_pb2_grpc.TenantServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            admin.CreateTenant(
                tenants_pb2.CreateTenantRequest(tenant="acme\n"),
                metadata=bearer(store_server.admin_key),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [p for p in (data_dir(store_server) / "heads").rglob("*") if "\n" in p.name]


def test_a_head_deleted_mid_call_is_not_found(store_server: ServerProcess) -> None:
    for stub in _stub(store_server, "race"):
        # A 3,000-example knn head is over the cache budget, so every Predict loads it again:
        # a dozen of them keep the head-loading threads busy while the small head waits.
        assert train(stub, "big", n=3000, kind="knn").state == heads_pb2.JOB_STATE_SUCCEEDED
        outcomes = []
        for attempt in range(5):
            head = f"small{attempt}"
            assert train(stub, head).state == heads_pb2.JOB_STATE_SUCCEEDED
            busy = [stub.Predict.future(predict_request("big"), timeout=60) for _ in range(12)]
            racing = stub.Predict.future(predict_request(head), timeout=60)
            time.sleep(0.05)  # its row is read; its files wait behind the big loads
            stub.DeleteHead(heads_pb2.DeleteHeadRequest(head=head), timeout=30)
            outcomes.append(code_of(racing))
            assert {code_of(f)[0] for f in busy} == {grpc.StatusCode.OK}
            if outcomes[-1][0] == grpc.StatusCode.NOT_FOUND:
                break
        print(f"racing Predict outcomes: {outcomes}")
        assert outcomes[-1] == (grpc.StatusCode.NOT_FOUND, f"head '{head}' not found"), outcomes
        assert {code for code, _ in outcomes} <= {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}


def test_a_damaged_head_file_is_healed_from_the_database_or_else_data_loss_and_listed(
    store_server: ServerProcess,
) -> None:
    for stub in _stub(store_server, "damage"):
        # The file is a cache of the database's copy: served from that, and written back.
        assert train(stub, "healed").version == 1
        onnx = data_dir(store_server) / "heads" / "damage" / "healed" / "1" / "head.onnx"
        good = onnx.read_bytes()
        onnx.write_bytes(good[:-16] + bytes(16))  # same size, different bytes
        assert len(stub.Predict(predict_request("healed"), timeout=30).predictions) == 8
        assert onnx.read_bytes() == good

        # With the database's copy damaged too, nothing good is left.
        assert train(stub, "broken").version == 1
        onnx = data_dir(store_server) / "heads" / "damage" / "broken" / "1" / "head.onnx"
        good = onnx.read_bytes()
        onnx.write_bytes(good[:-16] + bytes(16))
        db = Database(data_dir(store_server))
        try:
            damage_database_copy(db, "damage", "broken", 1)
        finally:
            db.close()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(predict_request("broken"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.DATA_LOSS
        assert "head 'broken' version 1 is damaged" in caught.value.details()
        assert "checksum" in caught.value.details() and "in the database" in caught.value.details()
        head = stub.GetHead(heads_pb2.GetHeadRequest(head="broken"), timeout=30)
        assert head.damaged and "checksum" in head.health
        listed = {h.name: h.damaged for h in stub.ListHeads(heads_pb2.ListHeadsRequest()).heads}
        assert listed == {"broken": True, "healed": False}

        onnx.write_bytes(good)  # the operator restores the file: it serves and is healthy again
        assert len(stub.Predict(predict_request("broken"), timeout=30).predictions) == 8
        head = stub.GetHead(heads_pb2.GetHeadRequest(head="broken"), timeout=30)
        assert (head.damaged, head.health) == (False, "")
