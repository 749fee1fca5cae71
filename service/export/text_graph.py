"""Tracing a text encoder (ids + mask → one embedding per text) to a fused ONNX graph.

Shared by every text recipe (the default MiniLM and any Hugging Face folder), so that all text
backbones have the same inputs and output the serving runtimes expect. torch only: export time.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from service.backbones.modalities.tensors import TEXT_TENSORS
from service.export.contract import OPSET, OUTPUT_NAME, TEXT_INPUT_NAMES, dynamic_axes

log = logging.getLogger(__name__)


def export_text_encoder(
    module: Any, out_file: Path, *, fusion_type: str, num_heads: int, hidden_size: int
) -> None:
    """Traces `module(input_ids, attention_mask) -> [N, dim]` with dynamic batch and sequence
    axes, then fuses attention, LayerNorm and GELU for ONNX Runtime.

    Args:
        module: The torch wrapper (encoder + pooling + normalisation), in eval mode.
        out_file: Where the fused graph goes.
        fusion_type: ONNX Runtime's transformer optimizer model type ("bert", "gpt2").
        num_heads: Attention heads of the encoder.
        hidden_size: Hidden width of the encoder.
    """
    import torch
    from onnxruntime.transformers import optimizer

    # A sample with padding: nothing the mask does may be traced away as "all ones".
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    raw = out_file.with_suffix(".raw.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # transformers' mask code indexes with non-negative indices only; verification runs a
        # padded batch through the graph, so a wrong mask would not pass unnoticed.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(
            module,
            (ids, mask),
            str(raw),
            input_names=TEXT_INPUT_NAMES,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes(TEXT_TENSORS),
            opset_version=OPSET,
            dynamo=False,
        )
    fused = optimizer.optimize_model(
        str(raw), model_type=fusion_type, num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    log.info(
        "fused operators: %s", {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    )
    fused.save_model_to_file(str(out_file))
