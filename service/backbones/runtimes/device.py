"""Where the embedded runtime runs a backbone: the CPU, or a CUDA GPU (`TRANSFERD_DEVICE`).

`auto` takes CUDA when this ONNX Runtime has the CUDA provider (the `gpu` extra,
onnxruntime-gpu) and the session really gets it, else the CPU; `cuda` refuses to start without
it; `cpu` never tries. An int8 backbone always runs on the CPU: dynamic int8 has no fast CUDA
kernels (published figures put it at a small fraction of fp16 on the same GPU), and on a GPU the
fp16 export is the fast one. What was chosen, and why, is logged once per backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.backbones.card import FP32, INT8, BackboneCard
from service.backbones.runtimes.base import BackboneLoadError
from service.config import Device

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass(frozen=True)
class Placement:
    """The device a backbone's session runs on, its providers in order, and why."""

    device: str  # "cpu" or "cuda": where inputs are bound and outputs come from
    providers: list[str]
    reason: str

    @property
    def on_cuda(self) -> bool:
        return self.device == "cuda"


def choose_placement(
    asked: Device, card: BackboneCard, available: Sequence[str] | None = None
) -> Placement:
    """Where `card`'s backbone should run, given the setting and the providers of this ONNX
    Runtime (default: `ort.get_available_providers()`).

    Raises:
        BackboneLoadError: `cuda` was asked for and this ONNX Runtime has no CUDA provider.
    """
    available = list(ort.get_available_providers() if available is None else available)
    has_cuda = CUDA_PROVIDER in available
    if asked is Device.CUDA and not has_cuda:
        raise BackboneLoadError(
            f"TRANSFERD_DEVICE=cuda, but this ONNX Runtime has no {CUDA_PROVIDER} (it has: "
            f"{', '.join(available)}); install the gpu extra (pip install 'transferd[gpu]', "
            "onnxruntime-gpu) on a machine with CUDA, or set TRANSFERD_DEVICE to cpu or auto"
        )
    cpu = [CPU_PROVIDER]
    if card.precision == INT8:
        return Placement("cpu", cpu, "an int8 backbone runs on the CPU (int8 is slow on CUDA)")
    if asked is Device.CPU:
        return Placement("cpu", cpu, "TRANSFERD_DEVICE=cpu")
    if not has_cuda:
        return Placement(
            "cpu",
            cpu,
            f"TRANSFERD_DEVICE=auto and this ONNX Runtime has no {CUDA_PROVIDER} (the gpu "
            "extra adds it)",
        )
    return Placement("cuda", [CUDA_PROVIDER, CPU_PROVIDER], f"TRANSFERD_DEVICE={asked.value}")


def confirm_placement(
    placement: Placement, asked: Device, session: ort.InferenceSession, card: BackboneCard
) -> Placement:
    """The placement the session really got: ONNX Runtime falls back to the CPU when the CUDA
    provider cannot start (no GPU, no driver). Logs the outcome and its reason.

    Raises:
        BackboneLoadError: `cuda` was asked for and the session fell back to the CPU.
    """
    if placement.on_cuda and CUDA_PROVIDER not in session.get_providers():
        if asked is Device.CUDA:
            raise BackboneLoadError(
                f"{card.name}: TRANSFERD_DEVICE=cuda, but ONNX Runtime could not start its CUDA "
                "provider (no GPU visible, or a CUDA or cuDNN library missing; its log above "
                "says which)"
            )
        placement = Placement(
            "cpu", [CPU_PROVIDER], "TRANSFERD_DEVICE=auto and the CUDA provider did not start"
        )
    log.info("%s runs on %s: %s", card.name, placement.device, placement.reason)
    if placement.on_cuda and card.precision == FP32:
        log.info(
            "%s: an fp32 export on a GPU; the fp16 export (transferd export --fp16) is faster",
            card.name,
        )
    return placement


def run_bound(
    session: ort.InferenceSession, feed: dict[str, np.ndarray], output: str, device: str
) -> np.ndarray:
    """One call through IO binding: the inputs copied to `device` once, up front, the output
    left there by the session and copied back once (no per-call staging by ONNX Runtime)."""
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    binding.bind_output(output, device, 0)
    session.run_with_iobinding(binding)
    (rows,) = binding.copy_outputs_to_cpu()
    return np.asarray(rows)
