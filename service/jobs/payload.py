"""A training request as stored in `jobs.payload`, so that any replica can run the job.

Format 1 (never pickle: reading a payload runs no code) is zlib-compressed UTF-8 JSON::

    {"format": 1, "head": str, "backbone": str, "kind": str,
     "params": {str: str}, "validation_fraction": float, "embedding_dim": int,
     "inputs":  [{"text": str} | {"image": base64} | {"embedding": base64 of float32, LE}],
     "targets": [{"label": str} | {"labels": [str, ...]} | {"value": float}]}

A new format gets a new number; `decode` refuses numbers it does not know, so a replica of an
older release fails such a job clearly instead of misreading it.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from heads.targets import Target
from service.backbones.inputs import EmbeddingInput, ImageInput, Input, TextInput
from service.jobs.model import TrainingRequest

FORMAT = 1
# Level 1: most of a request is either text (which compresses well at any level) or images
# (already compressed): higher levels cost seconds on large requests and save little.
ZLIB_LEVEL = 1


class PayloadError(Exception):
    """A stored payload that this release cannot read."""


def encode(request: TrainingRequest) -> bytes:
    """The stored form of a validated request (CPU work: call it off the event loop)."""
    document = {
        "format": FORMAT,
        "head": request.head,
        "backbone": request.backbone,
        "kind": request.kind,
        "params": request.params,
        "validation_fraction": request.validation_fraction,
        "embedding_dim": request.embedding_dim,
        "inputs": [_input(item) for item in request.inputs],
        "targets": [_target(target) for target in request.targets],
    }
    # surrogatepass: text that Python holds is stored exactly as given, whatever it is.
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8", "surrogatepass"), ZLIB_LEVEL)


def decode(payload: bytes) -> TrainingRequest:
    """The request `encode` stored.

    Raises:
        PayloadError: not a payload of a format this release knows.
    """
    try:
        document = json.loads(zlib.decompress(payload).decode("utf-8", "surrogatepass"))
        if document.get("format") != FORMAT:
            raise PayloadError(f"stored in format {document.get('format')!r}, not {FORMAT}")
        return TrainingRequest(
            head=str(document["head"]),
            backbone=str(document["backbone"]),
            kind=str(document["kind"]),
            inputs=[_read_input(item) for item in document["inputs"]],
            targets=[_read_target(target) for target in document["targets"]],
            params={str(k): str(v) for k, v in document["params"].items()},
            validation_fraction=float(document["validation_fraction"]),
            embedding_dim=int(document["embedding_dim"]),
        )
    except PayloadError:
        raise
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PayloadError(f"unreadable: {type(error).__name__}: {error}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _input(item: Input) -> dict[str, str]:
    if isinstance(item, TextInput):
        return {"text": item.text}
    if isinstance(item, ImageInput):
        return {"image": _b64(item.data)}
    if isinstance(item, EmbeddingInput):
        return {"embedding": _b64(np.asarray(item.values, dtype="<f4").tobytes())}
    raise ValueError(f"a validated request has no {type(item).__name__}")


def _read_input(item: dict[str, Any]) -> Input:
    if "text" in item:
        return TextInput(str(item["text"]))
    if "image" in item:
        return ImageInput(base64.b64decode(item["image"], validate=True))
    if "embedding" in item:
        data = base64.b64decode(item["embedding"], validate=True)
        return EmbeddingInput(np.frombuffer(data, dtype="<f4").astype(np.float32))
    raise ValueError(f"an input of no known kind: {sorted(item)}")


def _target(target: Target) -> dict[str, object]:
    if isinstance(target, str):
        return {"label": target}
    if isinstance(target, int | float):
        return {"value": float(target)}
    if isinstance(target, Sequence):
        return {"labels": [str(label) for label in target]}
    raise ValueError(f"a target of no known kind: {type(target).__name__}")


def _read_target(target: dict[str, Any]) -> Target:
    if "label" in target:
        return str(target["label"])
    if "labels" in target:
        return [str(label) for label in target["labels"]]
    if "value" in target:
        return float(target["value"])
    raise ValueError(f"a target of no known kind: {sorted(target)}")
