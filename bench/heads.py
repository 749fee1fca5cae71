"""Heads: what training and prediction cost on top of embedding, measured in the same run.

Against a real `transferd serve`:
  * train a head on 1,000 real labelled texts (Python docstring paragraphs, labelled by module)
    end to end — TrainHead until the job SUCCEEDED — versus embedding the same texts alone over
    Embed (64 texts a request, one at a time, as the job does): the overhead ratio;
  * Predict latency for one text (p50, p99) versus Embed latency for one text (p50).
The last line is `ratio X` with X = training time / embedding time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkout  # noqa: F401 - devtools from the checkout

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from service.export.corpus import labelled_texts
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

BACKBONE = "all-minilm-l6-v2"
CHUNK = 64


def _percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument(
        "--model-repo",
        type=Path,
        default=Path(os.environ.get("TRANSFERD_MODEL_REPO", "model_repo")),
    )
    args = parser.parse_args()

    pairs = labelled_texts(args.texts)
    work = Path(tempfile.mkdtemp(prefix="transferd-bench-heads-"))
    # The embedding cache off: every round trains on the same texts, which must be embedded
    # each time for TrainHead to be compared with sklearn fed fresh embeddings.
    env = {
        "TRANSFERD_MODEL_REPO": str(args.model_repo.resolve()),
        "TRANSFERD_DATA_DIR": str(work / "data"),
        "TRANSFERD_LOG_LEVEL": "WARNING",
        "TRANSFERD_EMBEDDING_CACHE_MB": "0",
    }
    with (
        ServerProcess(env, work / "server.log") as server,
        authed_channel(server.address, server.create_tenant_key("bench")) as channel,
    ):
        embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        heads = heads_pb2_grpc.HeadServiceStub(channel)
        inputs = [common_pb2.Input(text=text) for text, _ in pairs]
        embed.Embed(embedding_pb2.EmbedRequest(backbone=BACKBONE, inputs=inputs[:CHUNK]))  # warm-up

        started = time.perf_counter()
        for start in range(0, len(inputs), CHUNK):
            embed.Embed(
                embedding_pb2.EmbedRequest(backbone=BACKBONE, inputs=inputs[start : start + CHUNK])
            )
        embed_seconds = time.perf_counter() - started

        request = heads_pb2.TrainHeadRequest(
            head="bench", backbone=BACKBONE,
            examples=[heads_pb2.Example(input=common_pb2.Input(text=t), label=label) for t, label in pairs],
        )  # fmt: skip
        started = time.perf_counter()
        job = heads.TrainHead(request)
        reply_ms = (time.perf_counter() - started) * 1000
        stages: dict[str, float] = {}
        for update in heads.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id)):
            stages.setdefault(update.stage, time.perf_counter() - started)
        train_seconds = time.perf_counter() - started
        if update.state != heads_pb2.JOB_STATE_SUCCEEDED:
            sys.exit(f"training failed: {update.error}")

        one = [common_pb2.Input(text=pairs[0][0])]
        predict_request = heads_pb2.PredictRequest(head="bench", inputs=one, top_k=3)
        embed_request = embedding_pb2.EmbedRequest(backbone=BACKBONE, inputs=one)
        heads.Predict(predict_request)  # loads the head into the cache
        predict_times: list[float] = []
        embed_times: list[float] = []
        for _ in range(args.latency_calls):  # interleaved: both see the same machine load
            started = time.perf_counter()
            heads.Predict(predict_request)
            predict_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            embed.Embed(embed_request)
            embed_times.append(time.perf_counter() - started)

    print(
        f"texts: {len(pairs)} docstring paragraphs, {len({label for _, label in pairs})} labels (modules)"
    )
    print(f"TrainHead replied in {reply_ms:.1f} ms (job queued)")
    print(f"embed alone: {embed_seconds:.2f} s; train end to end: {train_seconds:.2f} s "
          f"(validation accuracy {update.metrics['accuracy']:.3f})")  # fmt: skip
    print("stage reached at: " + ", ".join(f"{stage} {at:.2f}s" for stage, at in stages.items()))
    predict_p50, predict_p99 = _percentile_ms(predict_times, 50), _percentile_ms(predict_times, 99)
    embed_p50 = _percentile_ms(embed_times, 50)
    print(f"Predict one text: p50 {predict_p50:.2f} ms, p99 {predict_p99:.2f} ms; "
          f"Embed one text: p50 {embed_p50:.2f} ms; Predict/Embed p50 {predict_p50 / embed_p50:.3f}")  # fmt: skip
    print(f"ratio {train_seconds / embed_seconds:.3f}")


if __name__ == "__main__":
    main()
