"""The CPU flavour of a backbone for Triton's python backend: the same model.onnx on ONNX Runtime.

This file is copied as `<backbone>/1/model.py` into the CPU model repository that
`devtools.triton.cpu_repo` generates; it runs inside Triton's python backend stub, never
in the gateway. Production serves the same ONNX file with Triton's onnxruntime backend on GPU; this
model exists so that development and tests run the real tritonserver (with its real dynamic
batcher) on machines without a GPU.

It behaves like the onnxruntime backend does with dynamic batching: the requests of one
`execute` call become one ONNX Runtime call, and each request gets its own rows back.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

MODEL_FILE = "model.onnx"


class TritonPythonModel:
    """One ONNX Runtime session per model instance; requests of a batch share one call."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self._input_names = [spec["name"] for spec in config["input"]]
        self._output_name = config["output"][0]["name"]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # The gateway and the stub share the machine in development: a bounded pool, no spinning.
        options.intra_op_num_threads = int(params.get("INTRA_OP_THREADS", "0") or 0)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model_file = os.path.join(args["model_repository"], args["model_version"], MODEL_FILE)
        self._session = ort.InferenceSession(
            model_file, options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Runs every request of the dynamic batch in one ONNX Runtime call.

        Sequence inputs are right-padded with zeros to the longest request of the batch: the
        attention mask is zero there, and the graph's masked mean pooling ignores those positions,
        so padding never changes a row.
        """
        try:
            feeds = [
                {
                    name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self._input_names
                }
                for request in requests
            ]
        except Exception as error:  # a malformed request fails alone, with a message
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))] * len(
                requests
            )
        sizes = [feed[self._input_names[0]].shape[0] for feed in feeds]
        batch = {name: _concat_padded([feed[name] for feed in feeds]) for name in self._input_names}
        (rows,) = self._session.run([self._output_name], batch)
        responses = []
        start = 0
        for size in sizes:
            out = pb_utils.Tensor(
                self._output_name, np.ascontiguousarray(rows[start : start + size])
            )
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += size
        return responses

    def finalize(self) -> None:
        self._session = None


def _concat_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Stacks arrays along the batch axis, zero-padding the other axes on the right to the largest."""
    shape = tuple(max(sizes) for sizes in zip(*(a.shape[1:] for a in arrays), strict=True))
    return np.concatenate(
        [
            np.pad(
                a,
                [
                    (0, 0),
                    *((0, want - have) for want, have in zip(shape, a.shape[1:], strict=True)),
                ],
            )
            for a in arrays
        ]
    )
