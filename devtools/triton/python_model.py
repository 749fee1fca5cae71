"""The CPU flavour of a backbone for Triton's python backend: the same model.onnx on ONNX Runtime.

This file is copied as `<backbone>/1/model.py` into the CPU model repository that
`devtools.triton.cpu_repo` generates; it runs inside Triton's python backend stub, never
in the gateway. Production serves the same ONNX file with Triton's onnxruntime backend on GPU; this
model exists so that development and tests run the real tritonserver (with its real dynamic
batcher) on machines without a GPU.

It behaves like the onnxruntime backend does with dynamic batching: the requests of one
`execute` call become one ONNX Runtime call, and each request gets its own rows back (or its
own error: a bad request never fails the others of its batch).

It imports numpy and onnxruntime only: the input and output names come from the model's own
config (`args["model_config"]`), which cpu_repo copies from the production config.pbtxt.
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
        """Runs every request of the dynamic batch in one ONNX Runtime call; one response each.

        Sequence inputs are right-padded with zeros to the longest request of the batch: the
        attention mask is zero there, and the graph's masked mean pooling ignores those positions,
        so padding never changes a row.

        A bad request fails alone: one whose inputs cannot be read gets its own error and is left
        out of the call; when the call fails (e.g. a token id outside the vocabulary), each
        request runs alone, so that only the ones that fail by themselves get an error.
        """
        responses: list[Any] = [None] * len(requests)
        feeds: dict[int, dict[str, np.ndarray]] = {}
        for index, request in enumerate(requests):
            try:
                feeds[index] = self._feed(request)
            except Exception as error:
                responses[index] = _error_response(error)
        if feeds:
            try:
                outputs = self._run(list(feeds.values()))
            except Exception:
                outputs = [self._run_alone(feed) for feed in feeds.values()]
            for index, output in zip(feeds, outputs, strict=True):
                responses[index] = output
        return responses

    def _feed(self, request: Any) -> dict[str, np.ndarray]:
        """A request's inputs, by name; raises naming a missing or inconsistent input."""
        feed = {}
        for name in self._input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            feed[name] = tensor.as_numpy()
        rows = {array.shape[0] if array.ndim else 0 for array in feed.values()}
        if len(rows) != 1:
            raise ValueError("inputs disagree on the batch size")
        return feed

    def _run(self, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
        """One ONNX Runtime call over every feed; each feed's own rows, as its response."""
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

    def _run_alone(self, feed: dict[str, np.ndarray]) -> Any:
        try:
            (response,) = self._run([feed])
        except Exception as error:
            return _error_response(error)
        return response

    def finalize(self) -> None:
        self._session = None


def _error_response(error: Exception) -> Any:
    """A response that fails one request, with the reason."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))


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
