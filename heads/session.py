"""onnxruntime sessions for heads: small, single-threaded, CPU only.

Heads are a few matrix products; the service runs many of them concurrently in its executor, so
one thread per session avoids oversubscribing the cores and the thread-pool start-up cost.
"""

from __future__ import annotations

import onnxruntime as ort


def new_session(onnx_bytes: bytes) -> ort.InferenceSession:
    """Builds a single-threaded CPU inference session from serialized ONNX bytes.

    Raises:
        Whatever onnxruntime raises for an invalid model; callers translate it.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    return ort.InferenceSession(
        onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
