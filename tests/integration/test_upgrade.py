"""A data directory written by the release before this one (the last landed, on SQLite) upgrades
in place when this release starts on it: the schema is migrated, and its tenants, keys, heads
(with the same predictions), jobs and version numbering carry on. The earlier release runs from
its own source, taken from git history."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.conftest import ROOT
from tests.integration.conftest import (
    labelled,
    server_process,
    topics,
    train_request,
    wait_for_job,
)
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc

pytestmark = pytest.mark.slow

#: The last landed release: its schema is the one before migrations (Alembic) existed.
PREVIOUS_RELEASE = "fa52f82e2ac3a198efcf377ae5efd1a084c36432"
TRAIN = labelled({k: v for k, v in topics()["train"].items() if k in ("sports", "cooking")})
PROBE = [t for k, texts in topics()["test"].items() if k in ("sports", "cooking") for t in texts]


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's source tree, with this checkout's generated stubs (the protos are
    the same)."""
    source = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:  # a checkout without history (a shallow clone, an sdist)
        pytest.skip(f"no git history with {PREVIOUS_RELEASE[:10]}: {archive.stderr!r:.200}")
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    stubs = source / "transferd" / "v1"
    for stub in (ROOT / "transferd" / "v1").glob("*_pb2*.py"):
        shutil.copy2(stub, stubs / stub.name)
    return source


def _state(server: ServerProcess, secret: str) -> tuple[list, list]:
    """What a client sees with the key: the heads listed, and the head's predictions."""
    with authed_channel(server.address, secret) as channel:
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        listed = sorted(
            (h.name, h.version, h.damaged)
            for h in stub.ListHeads(heads_pb2.ListHeadsRequest(include_all_versions=True)).heads
        )
        reply = stub.Predict(
            heads_pb2.PredictRequest(
                head="topics", inputs=[common_pb2.Input(text=t) for t in PROBE]
            )
        )
        predictions = [(p.label, [round(s.score, 5) for s in p.scores]) for p in reply.predictions]
        return listed, predictions


def test_a_data_directory_of_the_previous_release_upgrades_in_place(
    tmp_path: Path, model_repo: Path, previous_release: Path
) -> None:
    data = {"TRANSFERD_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = server_process(tmp_path / "old", model_repo, source=previous_release, **data)
    with old:
        secret = old.create_tenant_key("acme")
        with authed_channel(old.address, secret) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            job = stub.TrainHead(train_request("topics", TRAIN))
            assert wait_for_job(stub, job.job_id)[-1].state == heads_pb2.JOB_STATE_SUCCEEDED
        before = _state(old, secret)

    new = server_process(tmp_path / "new", model_repo, TRANSFERD_ADMIN_KEY=old.admin_key, **data)
    with new:
        assert "migrated" in (tmp_path / "new" / "server.log").read_text()
        assert _state(new, secret) == before  # the key, the head and its predictions
        with authed_channel(new.address, secret) as channel:
            stub = heads_pb2_grpc.HeadServiceStub(channel)
            old_job = stub.GetJob(heads_pb2.GetJobRequest(job_id=job.job_id))
            assert (old_job.state, old_job.version) == (heads_pb2.JOB_STATE_SUCCEEDED, 1)
            again = stub.TrainHead(train_request("topics", TRAIN))
            final = wait_for_job(stub, again.job_id)[-1]
            assert (final.state, final.version) == (heads_pb2.JOB_STATE_SUCCEEDED, 2)
