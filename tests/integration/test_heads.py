"""Per-tenant heads over real gRPC with the real MiniLM: train, watch, predict, version, isolate.

Every test here runs on both runtimes (`both_runtimes`): training embeds its examples, and Predict
its inputs, through ONNX Runtime in the server and through Triton.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.integration.conftest import labelled, topics, train_request, wait_for_job
from tests.integration.scrape import server_metrics, value
from transferd.v1 import common_pb2, embedding_pb2, heads_pb2, heads_pb2_grpc

pytestmark = pytest.mark.both_runtimes

HEAD = "topics"
TWO_TOPICS = labelled({k: v for k, v in topics()["train"].items() if k in ("sports", "cooking")})
# Minutes of mlp training (tens of thousands of steps of a few ms): a job that is still active
# when the test cancels it, whatever the machine.
LONG = {"kind": "mlp", "params": {"epochs": "2000", "batch_size": "1", "hidden": "1024"}}


@pytest.fixture(scope="module")
def trained(heads_stub: heads_pb2_grpc.HeadServiceStub) -> dict:
    """Tenant acme trains the topic head once for this module."""
    job = heads_stub.TrainHead(train_request(HEAD, labelled(topics()["train"])))
    updates = wait_for_job(heads_stub, job.job_id)
    return {"job": job, "updates": updates}


def _accuracy(
    stub: heads_pb2_grpc.HeadServiceStub, head: str, pairs: list[tuple[str, str]]
) -> float:
    reply = stub.Predict(
        heads_pb2.PredictRequest(head=head, inputs=[common_pb2.Input(text=t) for t, _ in pairs])
    )
    return float(
        np.mean([p.label == label for p, (_, label) in zip(reply.predictions, pairs, strict=True)])
    )


def test_train_head_returns_a_queued_job_at_once(trained: dict) -> None:
    job = trained["job"]
    assert job.state == heads_pb2.JOB_STATE_QUEUED
    assert job.job_id and job.head == HEAD and job.num_examples == 72
    assert job.kind == "logistic_regression" and job.version == 0
    # The reply did not wait for the work: nothing was embedded or fitted when it was made.
    assert job.progress == 0.0 and job.stage == "queued" and not job.metrics
    later = trained["updates"]
    assert heads_pb2.JOB_STATE_RUNNING in [u.state for u in later]
    assert later[-1].updated_at.ToDatetime() > job.created_at.ToDatetime()


def test_watch_streams_progress_until_success(trained: dict) -> None:
    updates: list[heads_pb2.Job] = trained["updates"]
    states = [u.state for u in updates]
    assert states[-1] == heads_pb2.JOB_STATE_SUCCEEDED, updates[-1].error
    assert heads_pb2.JOB_STATE_RUNNING in states
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    stages = [u.stage for u in updates]
    for stage in ("embedding", "fit", "publishing", "done"):
        assert stage in stages
    final = updates[-1]
    assert final.version == 1
    # Measured on held-out examples of six clearly separable topics: chance is 1/6.
    assert final.metrics["num_validation"] >= 6
    assert final.metrics["accuracy"] >= 0.7, dict(final.metrics)


def test_predicts_held_out_text_far_above_chance_and_as_well_as_hand_made_sklearn(
    trained: dict, heads_stub, embedding_stub, reference_model
) -> None:
    data = topics()
    train, test = labelled(data["train"]), labelled(data["test"])
    ours = _accuracy(heads_stub, HEAD, test)
    # The hand-made baseline: sentence-transformers + scikit-learn defaults, same data.
    baseline = LogisticRegression().fit(
        reference_model.encode([t for t, _ in train]), [label for _, label in train]
    )
    theirs = float(
        np.mean(
            baseline.predict(reference_model.encode([t for t, _ in test]))
            == [label for _, label in test]
        )
    )
    print(f"held-out accuracy: transferd {ours:.3f}, hand-made sklearn {theirs:.3f}")
    assert ours >= 0.8  # chance is 1/6
    assert ours >= theirs


def test_predict_top_k_scores_and_precomputed_embeddings(
    trained: dict, heads_stub, embedding_stub
) -> None:
    text = "The goalkeeper saved a penalty in the final minute."
    by_text = heads_stub.Predict(
        heads_pb2.PredictRequest(head=HEAD, inputs=[common_pb2.Input(text=text)], top_k=3)
    )
    assert by_text.head == HEAD and by_text.version == 1
    (prediction,) = by_text.predictions
    assert prediction.label == "sports"
    assert [s.label for s in prediction.scores][0] == "sports" and len(prediction.scores) == 3
    scores = [s.score for s in prediction.scores]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    vector = embedding_stub.Embed(
        embedding_pb2.EmbedRequest(
            backbone="all-minilm-l6-v2", inputs=[common_pb2.Input(text=text)]
        )
    ).embeddings[0]
    by_vector = heads_stub.Predict(
        heads_pb2.PredictRequest(head=HEAD, inputs=[common_pb2.Input(embedding=vector)], top_k=3)
    )
    assert [(s.label, round(s.score, 5)) for s in by_vector.predictions[0].scores] == [
        (s.label, round(s.score, 5)) for s in prediction.scores
    ]
    all_scores = heads_stub.Predict(
        heads_pb2.PredictRequest(head=HEAD, inputs=[common_pb2.Input(text=text)])
    )
    assert len(all_scores.predictions[0].scores) == 6


def test_get_and_list_heads_describe_the_card(trained: dict, heads_stub) -> None:
    head = heads_stub.GetHead(heads_pb2.GetHeadRequest(head=HEAD))
    assert (head.name, head.version, head.kind, head.task) == (
        HEAD,
        1,
        "logistic_regression",
        "classification",
    )
    assert sorted(head.labels) == sorted(topics()["train"])
    assert head.backbone == "all-minilm-l6-v2" and len(head.backbone_fingerprint) == 64
    assert head.num_examples == 72 and "accuracy" in head.metrics and "C" in head.params
    assert HEAD in [h.name for h in heads_stub.ListHeads(heads_pb2.ListHeadsRequest()).heads]
    # A topic task is what pretrained features are for: no negative transfer, no warning.
    report = head.transfer
    assert report.baseline == "tfidf_word_char+ridge", report
    assert report.metric == "accuracy"
    assert report.head_score == pytest.approx(head.metrics["accuracy"], abs=1e-6)
    assert not report.negative_transfer and report.warning == "", report
    assert trained["updates"][-1].transfer == report


def test_training_again_makes_a_new_version_and_zero_means_latest(
    trained: dict, heads_stub
) -> None:
    pairs = labelled({k: v for k, v in topics()["train"].items() if k in ("sports", "cooking")})
    name = "versions"
    for expected in (1, 2):
        job = heads_stub.TrainHead(
            train_request(name, pairs, kind="knn", params={"n_neighbors": "3"})
        )
        final = wait_for_job(heads_stub, job.job_id)[-1]
        assert final.state == heads_pb2.JOB_STATE_SUCCEEDED and final.version == expected
    assert heads_stub.GetHead(heads_pb2.GetHeadRequest(head=name)).version == 2
    assert heads_stub.GetHead(heads_pb2.GetHeadRequest(head=name, version=1)).version == 1
    every = heads_stub.ListHeads(heads_pb2.ListHeadsRequest(include_all_versions=True)).heads
    assert sorted(h.version for h in every if h.name == name) == [1, 2]
    heads_stub.DeleteHead(heads_pb2.DeleteHeadRequest(head=name, version=2))
    assert heads_stub.GetHead(heads_pb2.GetHeadRequest(head=name)).version == 1
    heads_stub.DeleteHead(heads_pb2.DeleteHeadRequest(head=name))
    with pytest.raises(grpc.RpcError) as caught:
        heads_stub.GetHead(heads_pb2.GetHeadRequest(head=name))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_multi_label_and_regression_heads(trained: dict, heads_stub) -> None:
    data = topics()["train"]
    outdoors = {"sports", "weather"}
    multi = [
        heads_pb2.Example(
            input=common_pb2.Input(text=t),
            labels=sorted({label} | ({"outdoors"} if label in outdoors else set())),
        )
        for label, texts in data.items()
        for t in texts
    ]
    job = heads_stub.TrainHead(
        heads_pb2.TrainHeadRequest(head="multi", backbone="all-minilm-l6-v2", examples=multi)
    )
    assert wait_for_job(heads_stub, job.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
    reply = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head="multi",
            inputs=[common_pb2.Input(text="Snow and ice made the ski race dangerous.")],
        )
    )
    assert "outdoors" in reply.predictions[0].labels
    # Not every label for every input: a kitchen is not outdoors.
    reply = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head="multi",
            inputs=[common_pb2.Input(text="Whisk the eggs with the sugar and fold in the flour.")],
        )
    )
    assert "outdoors" not in reply.predictions[0].labels, list(reply.predictions[0].labels)

    numbers = [
        heads_pb2.Example(
            input=common_pb2.Input(text=t), value=float(i % 2 == 0 and label == "finance") * 10.0
        )
        for label, texts in data.items()
        for i, t in enumerate(texts)
    ]
    job = heads_stub.TrainHead(
        heads_pb2.TrainHeadRequest(
            head="value", backbone="all-minilm-l6-v2", kind="ridge", examples=numbers
        )
    )
    final = wait_for_job(heads_stub, job.job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED and "mae" in final.metrics
    head = heads_stub.GetHead(heads_pb2.GetHeadRequest(head="value"))
    assert head.task == "regression" and list(head.labels) == []
    # Half the finance texts are worth 10, everything else 0: the value follows the input.
    held_out = topics()["test"]
    reply = heads_stub.Predict(
        heads_pb2.PredictRequest(
            head="value",
            inputs=[common_pb2.Input(text=t) for t in held_out["finance"] + held_out["cooking"]],
        )
    )
    values = [p.value for p in reply.predictions]
    assert all(np.isfinite(values)) and all(p.scores == [] for p in reply.predictions)
    finance, cooking = values[: len(held_out["finance"])], values[len(held_out["finance"]) :]
    assert np.mean(finance) > np.mean(cooking) + 1.0, (finance, cooking)


def test_other_tenants_see_nothing_of_acme(
    trained: dict, server: ServerProcess, heads_stub
) -> None:
    """Tenant B gets NOT_FOUND for A's head and job, exactly as for things that do not exist."""
    job_id = trained["job"].job_id
    with authed_channel(server.address, server.create_tenant_key("globex")) as channel:
        other = heads_pb2_grpc.HeadServiceStub(channel)
        assert HEAD not in [h.name for h in other.ListHeads(heads_pb2.ListHeadsRequest()).heads]
        calls = {
            "GetHead": lambda name: other.GetHead(heads_pb2.GetHeadRequest(head=name)),
            "Predict": lambda name: other.Predict(
                heads_pb2.PredictRequest(head=name, inputs=[common_pb2.Input(text="hello")])
            ),
            "DeleteHead": lambda name: other.DeleteHead(heads_pb2.DeleteHeadRequest(head=name)),
        }
        for rpc, call in calls.items():
            details = []
            for name in (HEAD, "never-existed"):
                with pytest.raises(grpc.RpcError) as caught:
                    call(name)
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND, rpc
                details.append(caught.value.details().replace(name, "<name>"))
            assert details[0] == details[1], rpc  # indistinguishable
        for rpc in ("GetJob", "CancelJob"):
            with pytest.raises(grpc.RpcError) as caught:
                getattr(other, rpc)(getattr(heads_pb2, f"{rpc}Request")(job_id=job_id))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            list(other.WatchJob(heads_pb2.WatchJobRequest(job_id=job_id)))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Acme's head is untouched by the attempted delete.
    assert heads_stub.GetHead(heads_pb2.GetHeadRequest(head=HEAD)).version == 1


def test_training_metrics(trained: dict, server: ServerProcess, heads_stub) -> None:
    """The job gauge counts a job while it is active, the counters each job that ends, and the
    head cache gauges what Predict loaded."""
    before = server_metrics(server)
    job = heads_stub.TrainHead(train_request("metered", TWO_TOPICS, **LONG))
    during = server_metrics(server)
    # Still active after that scrape, so active during it (a job never becomes active again).
    assert heads_stub.GetJob(heads_pb2.GetJobRequest(job_id=job.job_id)).state in (
        heads_pb2.JOB_STATE_QUEUED,
        heads_pb2.JOB_STATE_RUNNING,
    )
    cancelled = heads_stub.CancelJob(heads_pb2.CancelJobRequest(job_id=job.job_id), timeout=60)
    assert cancelled.state == heads_pb2.JOB_STATE_CANCELLED
    after = server_metrics(server)

    active = "transferd_training_jobs_active"
    assert value(during, active) == value(before, active) + 1
    assert value(after, active) == value(before, active)
    for name in ("transferd_training_jobs_total", "transferd_training_job_duration_seconds_count"):
        cancelled_before = value(before, name, state="cancelled")
        assert value(after, name, state="cancelled") == cancelled_before + 1, name
        assert value(after, name, state="succeeded") >= 1, name  # the module's topic head

    heads_stub.Predict(
        heads_pb2.PredictRequest(head=HEAD, inputs=[common_pb2.Input(text="A cup final.")])
    )
    loaded = server_metrics(server)
    assert value(loaded, "transferd_heads_cached") >= 1
    assert value(loaded, "transferd_head_cache_bytes") > 0
