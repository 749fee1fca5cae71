"""`transferd export --fp16`: a verified float16 MiniLM with the same contract, its own fingerprint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.backbones.card import BackboneCard, model_path
from service.export import export_minilm, minilm
from service.export.triton_config import render_config
from tests.conftest import BACKBONE, ROOT


@pytest.fixture(scope="module")
def fp16_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("fp16")
    subprocess.run(
        [sys.executable, "-m", "service.cli", "export", "--fp16", "--model-repo", str(repo)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return repo / BACKBONE


@pytest.mark.slow
def test_the_fp16_export_is_verified_half_size_and_keeps_its_contract(
    fp16_export: Path, model_repo: Path
) -> None:
    card = BackboneCard.load(fp16_export)
    fp32_card = BackboneCard.load(model_repo / BACKBONE)
    assert card.export["precision"] == "fp16"
    assert card.export["verified_min_cosine"] >= 0.9999
    assert card.fingerprint != fp32_card.fingerprint  # heads bind to one or the other
    assert (
        model_path(fp16_export).stat().st_size
        < 0.6 * model_path(model_repo / BACKBONE).stat().st_size
    )
    graph = onnx.load(str(model_path(fp16_export))).graph
    initializers = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in graph.initializer}
    assert np.dtype(np.float16) in initializers
    # Same inputs and output types: the same config.pbtxt serves it, the gateway is unchanged.
    assert [i.type.tensor_type.elem_type for i in graph.input] == [onnx.TensorProto.INT64] * 2
    assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.FLOAT]
    rendered = render_config(card)
    assert (fp16_export / "config.pbtxt").read_text() == rendered
    assert rendered == (ROOT / "model_repo" / BACKBONE / "config.pbtxt").read_text()


@pytest.mark.slow
def test_an_export_of_the_other_precision_is_not_up_to_date(fp16_export: Path) -> None:
    assert export_minilm(fp16_export.parent, fp16=True).written is False
    assert not minilm.is_up_to_date(BackboneCard.load(fp16_export), fp16=False)
