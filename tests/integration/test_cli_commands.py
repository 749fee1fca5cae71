"""The `transferd` client commands, run as a user runs them (a subprocess of the installed console
script) against the real server: tenants and keys, training from JSON Lines and CSV with
progress, predictions as JSON, show with the confusion matrix, and errors as one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image

from devtools.launcher import ServerProcess, free_port
from tests.integration.cli_runner import Run, transferd
from tests.integration.conftest import labelled, topics
from transferd.client import Client


def _one_line_error(run: Run) -> str:
    """An expected failure: a non-zero exit, one `transferd:` line on stderr, no traceback."""
    assert run.code != 0, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transferd: "), run.err
    assert "Traceback" not in run.err
    return lines[0]


@pytest.fixture(scope="module")
def tenant_key(server: ServerProcess) -> str:
    """A tenant and its key, made with the CLI itself."""
    made = transferd("tenants", "create", "cli-acme", url=server.address, key=server.admin_key)
    assert made.code == 0 and made.out.strip() == "cli-acme", made
    run = transferd("keys", "create", "cli-acme", "--json", url=server.address,
                    key=server.admin_key)  # fmt: skip
    assert run.code == 0, run
    key = json.loads(run.out)
    assert set(key) == {"tenant", "key_id", "secret"} and key["tenant"] == "cli-acme"
    return key["secret"]


def test_tenants_and_keys_are_listed_expire_and_delete(server: ServerProcess) -> None:
    admin = {"url": server.address, "key": server.admin_key}
    assert transferd("tenants", "create", "cli-life", **admin).code == 0
    run = transferd("keys", "create", "cli-life", "--ttl", "600", "--json", **admin)
    assert run.code == 0, run
    brief = json.loads(run.out)
    assert set(brief) == {"tenant", "key_id", "secret", "expires_at"}
    listed = transferd("keys", "list", "cli-life", "--json", **admin)
    assert listed.code == 0, listed
    [row] = json.loads(listed.out)
    assert row["key_id"] == brief["key_id"] and row["expires_at"] == brief["expires_at"]
    assert brief["secret"] not in listed.out and "secret" not in row
    tenants = transferd("tenants", "list", **admin)
    assert tenants.code == 0 and "cli-life\t" in tenants.out, tenants
    deleted = transferd("tenants", "delete", "cli-life", "--json", **admin)
    assert deleted.code == 0, deleted
    assert json.loads(deleted.out)["keys_revoked"] == 1
    again = _one_line_error(transferd("tenants", "delete", "cli-life", **admin))
    assert "NOT_FOUND" in again and "cli-life" in again


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _train_rows() -> list[dict]:
    return [{"text": t, "label": label} for t, label in labelled(topics()["train"])]


def _test_rows() -> list[dict]:
    return [{"text": t, "label": label} for t, label in labelled(topics()["test"])]


def test_train_from_jsonl_then_predict_json_scores_held_out_text(
    server: ServerProcess, tenant_key: str, tmp_path: Path
) -> None:
    data = _jsonl(tmp_path / "train.jsonl", _train_rows())
    run = transferd("heads", "train", "cli-topics", "--data", data, url=server.address,
                    key=tenant_key)  # fmt: skip
    assert run.code == 0, run
    assert run.out.startswith("cli-topics v1: succeeded") and "accuracy" in run.out
    # Not a terminal: one progress line per stage on stderr instead of a bar.
    assert "cli-topics: embedding" in run.err and "done (100%)" in run.err

    held_out = _jsonl(tmp_path / "test.jsonl", _test_rows())
    run = transferd("predict", "cli-topics", "--data", held_out, "--json", url=server.address,
                    key=tenant_key)  # fmt: skip
    assert run.code == 0, run
    predictions = run.json_lines()
    truth = [row["label"] for row in _test_rows()]
    assert len(predictions) == len(truth)
    for prediction in predictions:
        assert set(prediction) == {"label", "scores", "labels", "value"}
        assert prediction["labels"] == [prediction["label"]] and prediction["value"] is None
        assert max(prediction["scores"], key=prediction["scores"].get) == prediction["label"]
    accuracy = sum(p["label"] == t for p, t in zip(predictions, truth, strict=True)) / len(truth)
    assert accuracy >= 0.8, accuracy
    # The same predictions as the client library's, in input order.
    with Client(server.address, api_key=tenant_key) as client:
        expected = client.predict("cli-topics", texts=[row["text"] for row in _test_rows()])
    assert [p["label"] for p in predictions] == [p.label for p in expected]

    # The same head over the Open Inference Protocol, through tritonclient with the key in its
    # headers: its LABEL output is the CLI's labels.
    client = triton.InferenceServerClient(server.address)
    texts = triton.InferInput("TEXT", [len(truth)], "BYTES")
    texts.set_data_from_numpy(np.array([r["text"].encode() for r in _test_rows()], dtype=object))
    result = client.infer("cli-topics", [texts], headers={"authorization": f"Bearer {tenant_key}"})
    labels = [label.decode() for label in result.as_numpy("LABEL")]
    assert labels == [p["label"] for p in predictions]

    top = transferd("predict", "cli-topics", "--text", "a late goal won the cup", "--top-k", "2",
                    "--json", url=server.address, key=tenant_key)  # fmt: skip
    [only] = top.json_lines()
    assert only["label"] == "sports" and len(only["scores"]) == 2


def test_train_from_csv_with_json_prints_the_final_job_and_show_has_the_matrix(
    server: ServerProcess, tenant_key: str, tmp_path: Path
) -> None:
    data = tmp_path / "train.csv"
    with data.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        writer.writerows((row["text"], row["label"]) for row in _train_rows())
    run = transferd("heads", "train", "cli-csv", "--data", data, "--json",
                    "--validation-fraction", "0.25", url=server.address,
                    key=tenant_key)  # fmt: skip
    assert run.code == 0, run
    assert run.err == ""  # --json: no progress either
    job = json.loads(run.out)
    assert job["state"] == "SUCCEEDED" and job["head"] == "cli-csv" and job["version"] == 1
    validated = int(job["metrics"]["num_validation"])

    shown = transferd("heads", "show", "cli-csv", "--json", url=server.address, key=tenant_key)
    head = json.loads(shown.out)
    labels, matrix = head["labels"], head["confusion_matrix"]
    assert labels == sorted(topics()["train"]) and len(matrix) == len(labels)
    assert sum(map(sum, matrix)) == validated

    picture = tmp_path / "matrix.png"
    shown = transferd("heads", "show", "cli-csv", "--plot", picture, url=server.address,
                      key=tenant_key)  # fmt: skip
    assert shown.code == 0, shown
    assert "validation confusion matrix" in shown.out and "precision" in shown.out
    for label in labels:
        assert any(line.startswith(label) for line in shown.out.splitlines()), label
    with Image.open(picture) as image:
        assert image.format == "PNG"

    listed = transferd("heads", "list", "--json", url=server.address, key=tenant_key)
    assert "cli-csv" in {head["name"] for head in listed.json_lines()}
    deleted = transferd("heads", "delete", "cli-csv", url=server.address, key=tenant_key)
    assert deleted.code == 0 and "deleted" in deleted.out
    gone = transferd("heads", "show", "cli-csv", url=server.address, key=tenant_key)
    assert _one_line_error(gone).startswith("transferd: NOT_FOUND: ")


def test_bad_files_are_refused_by_line_before_anything_is_sent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "a"}\n{"text": "no target"}\nnot json\n')
    # Nothing listens there: a request would fail UNAVAILABLE, not with the file's problems.
    nobody = f"127.0.0.1:{free_port()}"
    run = transferd("heads", "train", "h", "--data", bad, url=nobody, key="any")
    assert run.code == 2 and run.out == "", run
    assert run.err.splitlines() == [
        f"transferd: {bad}:2: needs exactly one of: label, labels, value",
        f"transferd: {bad}:3: not JSON: Expecting value: line 1 column 1 (char 0)",
    ]
    table = tmp_path / "bad.csv"
    table.write_text("text,label\nok,a\nno label,\n")
    # predict ignores the labels, so the same file passes and the call goes out (to nobody).
    run = transferd("predict", "h", "--data", table, url=nobody, key="any")
    assert _one_line_error(run).startswith("transferd: UNAVAILABLE: ") and run.code == 1
    run = transferd("heads", "train", "h", "--data", table, url=nobody, key="any")
    assert run.code == 2 and run.err.strip() == f"transferd: {table}:3: label is empty"


def test_server_refusals_are_one_line_with_the_status(
    server: ServerProcess, tenant_key: str, tmp_path: Path
) -> None:
    data = _jsonl(tmp_path / "train.jsonl", _train_rows())
    wrong_key = transferd("heads", "list", url=server.address, key="tdk_not_a_key")
    assert _one_line_error(wrong_key).startswith("transferd: UNAUTHENTICATED: ")
    not_admin = transferd("tenants", "create", "x", url=server.address, key=tenant_key)
    assert _one_line_error(not_admin).startswith("transferd: PERMISSION_DENIED: ")
    bad_kind = transferd("heads", "train", "h", "--data", data, "--kind", "oracle",
                         url=server.address, key=tenant_key)  # fmt: skip
    assert "INVALID_ARGUMENT" in _one_line_error(bad_kind) and bad_kind.code == 1
    no_key = transferd("heads", "list", url=server.address)
    assert _one_line_error(no_key) == "transferd: no API key: give --api-key or TRANSFERD_API_KEY"
    assert no_key.code == 2


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(out, "JPEG")
    return out.getvalue()


def test_a_failed_job_exits_non_zero_naming_the_row(
    server: ServerProcess, tenant_key: str, tmp_path: Path
) -> None:
    (tmp_path / "red.jpg").write_bytes(_jpeg((220, 20, 20)))
    (tmp_path / "blue.jpg").write_bytes(_jpeg((20, 20, 220)))
    (tmp_path / "cut.jpg").write_bytes(_jpeg((20, 220, 20))[:200])  # corrupt inside
    rows = [{"image": "red.jpg", "label": "red"}] * 3 + [{"image": "cut.jpg", "label": "blue"}]
    rows += [{"image": "blue.jpg", "label": "blue"}] * 3
    data = _jsonl(tmp_path / "images.jsonl", rows)
    run = transferd("heads", "train", "cli-images", "--data", data, url=server.address,
                    key=tenant_key)  # fmt: skip
    line = _one_line_error_after_progress(run)
    assert run.code == 1 and run.out == ""
    assert " failed: examples[3].input.image" in line and line.endswith(f"({data}:4)")
    run = transferd("heads", "train", "cli-images", "--data", data, "--json",
                    url=server.address, key=tenant_key)  # fmt: skip
    assert run.code == 1 and json.loads(run.out)["state"] == "FAILED"


def _one_line_error_after_progress(run: Run) -> str:
    assert "Traceback" not in run.err
    *_, last = run.err.strip().splitlines()
    assert last.startswith("transferd: job "), run.err
    return last


def test_no_wait_returns_the_queued_job_and_jobs_show_follows_it(
    server: ServerProcess, tenant_key: str, tmp_path: Path
) -> None:
    data = _jsonl(tmp_path / "train.jsonl", _train_rows())
    run = transferd("heads", "train", "cli-later", "--data", data, "--no-wait", "--json",
                    url=server.address, key=tenant_key)  # fmt: skip
    queued = json.loads(run.out)
    assert run.code == 0 and queued["state"] in ("QUEUED", "RUNNING", "SUCCEEDED")
    run = transferd("jobs", "show", queued["job_id"], "--wait", "--json", url=server.address,
                    key=tenant_key)  # fmt: skip
    assert run.code == 0 and json.loads(run.out)["state"] == "SUCCEEDED", run


def test_embed_prints_json_lines_or_writes_npy(
    server: ServerProcess, tenant_key: str, tmp_path: Path
) -> None:
    texts = ["one text", "another text", "a third"]
    run = transferd("embed", "all-minilm-l6-v2", "--text", *texts, url=server.address,
                    key=tenant_key)  # fmt: skip
    rows = np.array(run.json_lines(), dtype=np.float32)
    with Client(server.address, api_key=tenant_key) as client:
        expected = client.embed("all-minilm-l6-v2", texts=texts)
    np.testing.assert_array_equal(rows, expected)
    out = tmp_path / "vectors.npy"
    image = tmp_path / "red.jpg"
    image.write_bytes(_jpeg((220, 20, 20)))
    run = transferd("embed", "efficientnet-lite0", "--image", image, image, "--out", out,
                    url=server.address, key=tenant_key)  # fmt: skip
    assert run.code == 0 and run.out == "", run
    saved = np.load(out)
    assert saved.dtype == np.float32 and saved.shape[0] == 2
