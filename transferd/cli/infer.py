"""`transferd predict` and `transferd embed`: calling a head or a backbone on inputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferd.cli.common import EXIT_USAGE, CliError, client, print_json, version_flag
from transferd.cli.datafile import read_examples
from transferd.client import Example, HeadInfo, Prediction

# One call carries at most this many inputs or bytes: well under the server's limits, so a file
# of any length goes through, and progress is never far from the last reply.
INPUTS_PER_CALL = 64
BYTES_PER_CALL = 4 * 1024 * 1024


def add(commands: Any, flags: argparse.ArgumentParser) -> None:
    """Adds `predict` and `embed` to the `transferd` subcommands."""
    predict = commands.add_parser(
        "predict",
        parents=[flags],
        help="a head's predictions, one per input in input order",
        description="With --json: one object per input, {label, scores, labels, value}.",
    )
    predict.add_argument("head")
    version_flag(predict, "the head version")
    given = predict.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", nargs="+", metavar="T", help="texts to predict")
    given.add_argument(
        "--data", type=Path, metavar="FILE", help="JSON Lines or CSV (labels in it are ignored)"
    )
    predict.add_argument("--top-k", type=int, default=0, metavar="K", help="scores of the K best")
    predict.set_defaults(run=_predict)

    embed = commands.add_parser(
        "embed", parents=[flags], help="a backbone's embeddings, as JSON lines or .npy"
    )
    embed.add_argument("backbone")
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", nargs="+", metavar="T")
    source.add_argument("--image", nargs="+", type=Path, metavar="PATH", help="PNG or JPEG files")
    source.add_argument("--data", type=Path, metavar="FILE", help="JSON Lines or CSV")
    embed.add_argument(
        "--out", type=Path, metavar="FILE.npy", help="write a float32 (n, dim) array"
    )
    embed.set_defaults(run=_embed)


@dataclass(frozen=True)
class Inputs:
    """Texts or encoded images, under the client's keyword for them (`texts` or `images`)."""

    keyword: str
    items: Sequence[str] | Sequence[bytes]

    @classmethod
    def of(cls, examples: list[Example]) -> Inputs:
        """The examples' texts or their images; a file must not mix them."""
        if all(e.text is not None for e in examples):
            return cls("texts", [e.text for e in examples if e.text is not None])
        if all(e.image is not None for e in examples):
            return cls("images", [e.image for e in examples if e.image is not None])
        raise CliError("the data file mixes texts and images; give one kind", EXIT_USAGE)

    def batches(self) -> Iterator[dict[str, Any]]:
        """Keyword arguments for consecutive calls, each within INPUTS_PER_CALL and
        BYTES_PER_CALL (an item larger than that goes alone: the server judges it)."""
        start, size = 0, 0
        for end, item in enumerate(self.items):
            length = len(item.encode() if isinstance(item, str) else item)
            if end > start and (end - start == INPUTS_PER_CALL or size + length > BYTES_PER_CALL):
                yield {self.keyword: list(self.items[start:end])}
                start, size = end, 0
            size += length
        if start < len(self.items):
            yield {self.keyword: list(self.items[start:])}


def _given(args: argparse.Namespace) -> Inputs:
    """The inputs of --text, --image (embed only) or --data."""
    if args.text is not None:
        return Inputs("texts", args.text)
    if getattr(args, "image", None) is not None:
        return Inputs("images", [_read_image(path) for path in args.image])
    return Inputs.of(read_examples(args.data, targets=False).examples)


def _predict(args: argparse.Namespace) -> None:
    if args.top_k < 0:
        raise CliError("--top-k must be 0 (every score) or more", EXIT_USAGE)
    inputs = _given(args)
    with client(args) as c:
        # The version is pinned once, so a file split over several calls is predicted by one
        # version even while the head is retrained.
        head = c.head(args.head, args.version)
        for batch in inputs.batches():
            for prediction in c.predict(head.name, top_k=args.top_k, version=head.version, **batch):
                _print_prediction(args, head, prediction)


def _print_prediction(args: argparse.Namespace, head: HeadInfo, prediction: Prediction) -> None:
    """JSON: the four keys for every task, null or empty where the task has no such output."""
    regression = head.task == "regression"
    if head.task == "classification":
        chosen = [prediction.label]
    else:
        chosen = prediction.labels
    if args.json:
        print_json(
            {
                "label": None if regression else prediction.label,
                "scores": prediction.scores,
                "labels": chosen,
                "value": prediction.value if regression else None,
            }
        )
    elif regression:
        print(f"{prediction.value:.6g}")
    elif head.task == "multi_label":
        print("|".join(chosen))
    else:
        print(f"{prediction.label}\t{prediction.scores.get(prediction.label, 0.0):.4f}")


def _embed(args: argparse.Namespace) -> None:
    inputs = _given(args)
    vectors: list[np.ndarray] = []
    with client(args) as c:
        for batch in inputs.batches():
            block = c.embed(args.backbone, **batch)
            if args.out is None:
                for row in block:
                    print_json([float(v) for v in row])
            vectors.append(block)
    if args.out is not None:
        array = np.concatenate(vectors).astype(np.float32, copy=False)
        try:
            np.save(args.out, array)
        except OSError as error:
            raise CliError(f"--out {args.out}: {error.strerror or error}", EXIT_USAGE) from None
        print(f"wrote {array.shape[0]}x{array.shape[1]} float32 to {args.out}", file=sys.stderr)


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliError(f"--image {path}: {error.strerror}", EXIT_USAGE) from None
