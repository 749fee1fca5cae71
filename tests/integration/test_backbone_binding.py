"""A head is bound to the export of its backbone: after a re-export, Predict is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import onnx
import pytest

from devtools.client import authed_channel
from service.backbones.card import CARD_FILE, model_path, sha256_of_file
from tests.conftest import BACKBONE
from tests.integration.conftest import labelled, start_server, topics, train_request, wait_for_job
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc


def _re_export(folder: Path) -> None:
    """Stands in for a new export: the same graph with different bytes, and a card to match."""
    model = onnx.load(str(model_path(folder)))
    model.doc_string = "re-exported"
    onnx.save(model, str(model_path(folder)))
    card = json.loads((folder / CARD_FILE).read_text())
    card["fingerprint"] = sha256_of_file(model_path(folder))
    (folder / CARD_FILE).write_text(json.dumps(card))


def test_predict_with_a_head_of_another_export_is_failed_precondition(
    tmp_path: Path, model_repo: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / BACKBONE, repo / BACKBONE)
    two = ("sports", "cooking")
    pairs = labelled({k: v for k, v in topics()["train"].items() if k in two})
    # Held-out sentences of both topics: a head that answers one label for everything fails.
    held_out = labelled({k: v for k, v in topics()["test"].items() if k in two})
    predict = heads_pb2.PredictRequest(
        head="bound", inputs=[common_pb2.Input(text=t) for t, _ in held_out]
    )
    expected = [label for _, label in held_out]

    server = start_server(tmp_path, repo)
    key = server.create_tenant_key("acme")
    with authed_channel(server.address, key) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        job = stub.TrainHead(train_request("bound", pairs))
        assert wait_for_job(stub, job.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
        assert [p.label for p in stub.Predict(predict).predictions] == expected
    server.stop()

    _re_export(repo / BACKBONE)
    server.start()
    try:
        with authed_channel(server.address, key) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(predict)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "train it again" in caught.value.details()
            # Training again on the new export makes a head that predicts.
            job = stub.TrainHead(train_request("bound", pairs))
            assert wait_for_job(stub, job.job_id)[-1].version == 2
            assert [p.label for p in stub.Predict(predict).predictions] == expected
    finally:
        server.stop()
