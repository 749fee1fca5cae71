"""What stays of a training job's examples, read from the SQLite file itself: the stored request
is dropped when the job ends (the default), or kept for TRANSFERD_JOB_PAYLOAD_RETENTION_S and
then dropped; the head keeps only the data hash and counts, never an example."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.integration.conftest import labelled, start_server, topics, train_request, wait_for_job
from transferd.v1 import heads_pb2, heads_pb2_grpc

RETENTION_S = 2.0
#: A few examples of three topics: a job of a few seconds.
EXAMPLES = [
    (text, label)
    for text, label in labelled(topics()["train"])
    if label in ("sports", "cooking", "finance")
][::2]


def query(data: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of the server's SQLite file, read-only, beside the running server."""
    uri = f"file:{data / 'transferd.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as connection:
        return connection.execute(sql, args).fetchall()


def payload_stored(data: Path, job_id: str) -> bool:
    ((stored,),) = query(data, "SELECT payload IS NOT NULL FROM jobs WHERE job_id = ?", job_id)
    return bool(stored)


def train(server: ServerProcess, head: str) -> tuple[str, float]:
    """Trains `head` to SUCCEEDED; the job id and when its end was seen (monotonic)."""
    with authed_channel(server.address, server.create_tenant_key("acme")) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        job_id = stub.TrainHead(train_request(head, EXAMPLES)).job_id
        final = wait_for_job(stub, job_id)[-1]
    assert final.state == heads_pb2.JOB_STATE_SUCCEEDED, final.error
    return job_id, time.monotonic()


def test_a_jobs_examples_are_gone_when_it_ends_and_the_head_keeps_none(
    tmp_path: Path, minilm_repo: Path
) -> None:
    server = start_server(tmp_path, minilm_repo)
    data = tmp_path / "data"
    try:
        job_id, _ended = train(server, "topics")
        assert not payload_stored(data, job_id)
        # The head: its card (data hash and counts) and ONNX, in the database and on disk.
        ((card_json,),) = query(data, "SELECT card_json FROM heads WHERE name = 'topics'")
        blobs = [bytes(blob) for (blob,) in query(data, "SELECT data FROM head_blobs")]
        files = [p.read_bytes() for p in (data / "heads").rglob("*") if p.is_file()]
    finally:
        server.stop()
    assert f'"num_examples":{len(EXAMPLES)}' in str(card_json).replace(" ", "")
    assert '"data_hash"' in str(card_json)
    assert blobs and files
    for text, _label in EXAMPLES:
        # logistic_regression keeps weights only: no example, in any form the server wrote.
        assert text not in str(card_json)
        assert not any(text.encode() in stored for stored in (*blobs, *files)), text


def test_a_retention_keeps_the_examples_that_long_then_the_sweep_drops_them(
    tmp_path: Path, minilm_repo: Path
) -> None:
    server = start_server(tmp_path, minilm_repo, TRANSFERD_JOB_PAYLOAD_RETENTION_S=str(RETENTION_S))
    data = tmp_path / "data"
    try:
        job_id, ended = train(server, "kept")
        assert payload_stored(data, job_id)  # ended just now: within the retention
        # The sweep runs every half retention: gone within retention + one period (+ slack).
        while payload_stored(data, job_id):
            assert time.monotonic() - ended < RETENTION_S * 1.5 + 5, "never dropped"
            time.sleep(0.1)
        assert time.monotonic() - ended > RETENTION_S * 0.5  # not at the job's end
    finally:
        server.stop()
