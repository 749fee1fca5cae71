"""A fitted ``mlp`` head: scores with torch, exports with torch.onnx (TorchScript exporter).

Imported only when an mlp is trained; serving its ONNX graph needs onnxruntime alone.
"""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import onnx
import torch

from heads.contract import INPUT_NAME, OPSET
from heads.kinds.mlp_train import MlpNet, single_threaded_torch
from heads.onnx_export import finalize_graph
from heads.targets import Task

#: Name of the network's output inside the exported graph, before `finalize_graph` gives the
#: contract's name (and, for regression, the contract's [N] shape) to it.
RAW_OUTPUT = "mlp_output"
BATCH_AXIS = "N"
#: The TorchScript exporter keeps process-wide state while it runs (two exports at once fail
#: with "GLOBALS.in_onnx_export must be False"); an export takes milliseconds, so serialise them.
_export_lock = threading.Lock()


class MlpModel:
    """A trained `MlpNet` (eval mode) as a `heads.kinds.base.FittedModel`."""

    def __init__(self, net: MlpNet, task: Task) -> None:
        self.net = net
        self.task = task

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n, n_labels) or values (n,), float64, computed in float32 as ONNX does."""
        with single_threaded_torch(), torch.no_grad():
            out = self.net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return out.numpy().astype(np.float64)

    def to_onnx(self, embedding_dim: int) -> onnx.ModelProto:
        """Exports the network: ``embedding`` [N, d] -> ``probabilities`` / ``value``."""
        buffer = io.BytesIO()
        example = torch.zeros((2, embedding_dim), dtype=torch.float32)
        # dynamo=False: the TorchScript exporter handles this small static graph in
        # milliseconds, needs no onnxscript, and honours the default-domain opset exactly.
        with _export_lock, single_threaded_torch(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notices reach no one who can act
            torch.onnx.export(
                self.net,
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes a file-like f too
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[RAW_OUTPUT],
                opset_version=OPSET,
                dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, RAW_OUTPUT: {0: BATCH_AXIS}},
                do_constant_folding=True,
            )
        return finalize_graph(onnx.load_from_string(buffer.getvalue()), RAW_OUTPUT, self.task)
