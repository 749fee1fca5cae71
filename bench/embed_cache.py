"""Work done twice, measured against doing it once (bench/embed.py prints these lines).

Each round starts a fresh `transferd serve` with the default settings (embedding cache on) and
measures, in this order:
  - warm-up: one new text embedded right after the server reports SERVING (the client's
    connection opened and its key checked by a ListBackbones first), against the median of 20
    new texts embedded one at a time afterwards (steady state);
  - cache: a new tenant embeds the same texts twice (32 a request, 4 requests in flight);
  - training: a new tenant trains a head on labelled texts it has never sent, then trains it
    again on the same examples (embedded already: only the head is fitted again).
Each figure is the median over the rounds; a ratio above 1 is time saved.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

BACKBONE = "all-minilm-l6-v2"
STEADY_SAMPLES = 20


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _one_text(stub: embedding_pb2_grpc.EmbeddingServiceStub, text: str) -> None:
    stub.Embed(embedding_pb2.EmbedRequest(backbone=BACKBONE, inputs=[common_pb2.Input(text=text)]))


def _train(stub: heads_pb2_grpc.HeadServiceStub, pairs: list[tuple[str, str]]) -> None:
    """TrainHead, watched until SUCCEEDED."""
    request = heads_pb2.TrainHeadRequest(
        head="repeat",
        backbone=BACKBONE,
        kind="logistic_regression",
        examples=[heads_pb2.Example(input=common_pb2.Input(text=t), label=y) for t, y in pairs],
    )
    job = stub.TrainHead(request)
    final = list(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), timeout=600))[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error


def _one_round(
    server: ServerProcess,
    round_: int,
    fresh: Iterator[str],
    pairs: list[tuple[str, str]],
    embed_twice: Callable[[str, str], Callable[[], object]],
) -> dict[str, tuple[float, float]]:
    """The three measures on a server that has just reported SERVING."""
    key = server.create_tenant_key(f"cache-{round_}")
    with authed_channel(server.address, key) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        # The connection and the key's first check are not the backbone's warm-up: done first.
        stub.ListBackbones(embedding_pb2.ListBackbonesRequest())
        first = _timed(partial(_one_text, stub, next(fresh)))
        steady = statistics.median(
            _timed(partial(_one_text, stub, next(fresh))) for _ in range(STEADY_SAMPLES)
        )
    embed = embed_twice(server.address, key)
    cache = (_timed(embed), _timed(embed))
    with authed_channel(server.address, server.create_tenant_key(f"train-{round_}")) as channel:
        train = partial(_train, heads_pb2_grpc.HeadServiceStub(channel), pairs)
        training = (_timed(train), _timed(train))
    return {"warm-up": (first, steady), "cache": cache, "training": training}


def run_repeats(
    texts: list[str],
    pairs: list[tuple[str, str]],
    model_repo: Path,
    rounds: int,
    embed_twice: Callable[[str, str], Callable[[], object]],
) -> dict[str, tuple[float, float]]:
    """(first, again) seconds per measure, medians over `rounds` fresh servers.

    Args:
        texts: What the cache measure embeds twice (the warm-up measure sends numbered variants
            of the first).
        pairs: Labelled texts the training measure trains on twice.
        model_repo: The model repository.
        rounds: Fresh servers to measure on.
        embed_twice: (address, key) -> a function embedding `texts` through that server.
    """
    env = {"TRANSFERD_MODEL_REPO": str(model_repo.resolve()), "TRANSFERD_LOG_LEVEL": "WARNING"}
    # One text, numbered: new to the cache every time, and of one length, so that the first
    # request and the steady ones cost the model the same.
    fresh = (f"{texts[0]} (variant {index})" for index in itertools.count())
    samples: list[dict[str, tuple[float, float]]] = []
    for round_ in range(rounds):
        work = Path(tempfile.mkdtemp(prefix="transferd-bench-repeats-"))
        env_of_round = {**env, "TRANSFERD_DATA_DIR": str(work)}
        with ServerProcess(env_of_round, work / "server.log") as server:
            samples.append(_one_round(server, round_, fresh, pairs, embed_twice))
    return {
        name: (
            statistics.median(sample[name][0] for sample in samples),
            statistics.median(sample[name][1] for sample in samples),
        )
        for name in samples[0]
    }
