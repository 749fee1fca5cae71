"""Replicas: what the PostgreSQL store costs against SQLite, measured in the same run.

Starts two `transferd serve` with the same settings, one on SQLite (the default: a file under its
data directory) and one on a fresh database of a local PostgreSQL (created here, dropped at the
end), then, on each:
  * trains the same small head several times, TrainHead until the job SUCCEEDED (median, min);
  * calls Predict with one text, the two servers in turn so that both see the same machine load
    (p50, p99 over --predict-calls calls each).
Prints the figures and the ratios PostgreSQL / SQLite; the target is Predict within 1.1x, since
keys and heads are cached in the gateway. The last line is `ratio X` with X = PostgreSQL Predict
p50 / SQLite Predict p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkout  # noqa: F401 - devtools from the checkout

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from service.export.corpus import labelled_texts
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc

BACKBONE = "all-minilm-l6-v2"
HEAD = "bench"


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on `server` (user@host:port); yields its SQLAlchemy URL, drops it after."""
    name = f"transferd_bench_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://{server}/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{server}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def train_seconds(
    stub: heads_pb2_grpc.HeadServiceStub, request: heads_pb2.TrainHeadRequest
) -> float:
    """TrainHead until the job is SUCCEEDED, in seconds."""
    started = time.perf_counter()
    job = stub.TrainHead(request)
    final = list(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), timeout=600))[-1]
    if final.state != heads_pb2.JOB_STATE_SUCCEEDED:
        sys.exit(f"training failed: {final.error}")
    return time.perf_counter() - started


def _ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--train-runs", type=int, default=3)
    parser.add_argument("--predict-calls", type=int, default=300)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TRANSFERD_BENCH_POSTGRES", "postgres@127.0.0.1:5432"),
        help="user@host:port of the PostgreSQL server to create the database on",
    )
    parser.add_argument(
        "--model-repo",
        type=Path,
        default=Path(os.environ.get("TRANSFERD_MODEL_REPO", "model_repo")),
    )
    args = parser.parse_args()

    pairs = labelled_texts(args.examples)
    request = heads_pb2.TrainHeadRequest(
        head=HEAD, backbone=BACKBONE,
        examples=[heads_pb2.Example(input=common_pb2.Input(text=t), label=label) for t, label in pairs],
    )  # fmt: skip
    predict_request = heads_pb2.PredictRequest(
        head=HEAD, inputs=[common_pb2.Input(text=pairs[0][0])], top_k=3
    )
    work = Path(tempfile.mkdtemp(prefix="transferd-bench-replicas-"))
    common = {
        "TRANSFERD_MODEL_REPO": str(args.model_repo.resolve()),
        "TRANSFERD_LOG_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(args.postgres))
        stubs: dict[str, heads_pb2_grpc.HeadServiceStub] = {}
        for store, extra in (("sqlite", {}), ("postgresql", {"TRANSFERD_DATABASE_URL": url})):
            env = {**common, "TRANSFERD_DATA_DIR": str(work / store / "data"), **extra}
            (work / store).mkdir(parents=True)
            server = stack.enter_context(ServerProcess(env, work / store / "server.log"))
            channel = stack.enter_context(
                authed_channel(server.address, server.create_tenant_key("bench"))
            )
            stubs[store] = heads_pb2_grpc.HeadServiceStub(channel)

        trains: dict[str, list[float]] = {store: [] for store in stubs}
        for run in range(args.train_runs):
            # Each run starts with the other store, so that neither always goes first.
            for store in list(stubs)[:: 1 if run % 2 == 0 else -1]:
                trains[store].append(train_seconds(stubs[store], request))

        predicts: dict[str, list[float]] = {store: [] for store in stubs}
        for stub in stubs.values():
            stub.Predict(predict_request)  # loads the head into the server's cache
        for _ in range(args.predict_calls):  # interleaved: both see the same machine load
            for store, stub in stubs.items():
                started = time.perf_counter()
                stub.Predict(predict_request)
                predicts[store].append(time.perf_counter() - started)

    print(f"head: {len(pairs)} docstring paragraphs, {len({label for _, label in pairs})} labels, "
          f"logistic_regression; {args.train_runs} trainings and {args.predict_calls} Predicts of "
          "one text per store")  # fmt: skip
    figures: dict[str, dict[str, float]] = {}
    for store in stubs:
        figures[store] = {
            "train": statistics.median(trains[store]),
            "p50": _ms(predicts[store], 50),
            "p99": _ms(predicts[store], 99),
        }
        print(f"{store:10s} TrainHead to SUCCEEDED median {figures[store]['train']:.2f} s "
              f"(min {min(trains[store]):.2f} s); Predict p50 {figures[store]['p50']:.2f} ms, "
              f"p99 {figures[store]['p99']:.2f} ms")  # fmt: skip
    pg, lite = figures["postgresql"], figures["sqlite"]
    print(f"PostgreSQL / SQLite: TrainHead {pg['train'] / lite['train']:.3f}, "
          f"Predict p50 {pg['p50'] / lite['p50']:.3f}, p99 {pg['p99'] / lite['p99']:.3f} "
          "(target: Predict within 1.1)")  # fmt: skip
    print(f"ratio {pg['p50'] / lite['p50']:.3f}")


if __name__ == "__main__":
    main()
