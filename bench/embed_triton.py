"""`bench/embed.py --runtime triton`: the gateway on Triton against the gateway on the embedded
runtime, in the same run, with Triton's own batch statistics.

Contenders, on the same real texts, 32 texts a request, 4 requests in flight, best of interleaved
rounds (the machine is shared and noisy: only figures measured together compare):
  (c) Embed over gRPC to `transferd serve` with the embedded runtime (ONNX Runtime in-process);
  (d) Embed over gRPC to `transferd serve` with runtime=triton, calling a local CPU tritonserver
      (nvidia-pytriton's, python backend running the same model.onnx; what `make triton` runs).
Triton's batch statistics come from its metrics endpoint, over the measured rounds of (d):
average batch size = nv_inference_count / nv_inference_exec_count.
The last line is `ratio X` with X = d / c. On a machine without a GPU, Triton, its python backend
and the gateway share the same cores, so d measures the overhead of the path, not a GPU's speed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import checkout  # noqa: F401 - devtools from the checkout
import numpy as np
from embed import BACKBONE, best_throughput, grpc_contender

from devtools.launcher import ServerProcess
from devtools.triton.process import TritonProcess, model_counters

ROOT = Path(__file__).resolve().parent.parent
PYTHON_ENV = ROOT / "build" / "triton-python-env"


def _gateway(env: dict[str, str], workdir: Path, name: str) -> ServerProcess:
    return ServerProcess(
        {**env, "TRANSFERD_DATA_DIR": str(workdir / name)}, workdir / f"{name}.log"
    )


def run(texts: list[str], model_repo: Path, rounds: int) -> None:
    """Measures (c) and (d) and prints throughput, Triton's batch statistics and `ratio d/c`."""
    workdir = Path(tempfile.mkdtemp(prefix="transferd-bench-triton-"))
    # The embedding cache off: every round repeats the same texts, which must reach the backbone.
    base = {
        "TRANSFERD_MODEL_REPO": str(model_repo.resolve()),
        "TRANSFERD_LOG_LEVEL": "WARNING",
        "TRANSFERD_EMBEDDING_CACHE_MB": "0",
    }
    with TritonProcess(model_repo, workdir / "triton", python_env=PYTHON_ENV) as triton:
        triton_env = {
            **base,
            "TRANSFERD_RUNTIME": "triton",
            "TRANSFERD_TRITON_URL": triton.grpc_url,
        }
        with (
            _gateway(base, workdir, "embedded") as embedded,
            _gateway(triton_env, workdir, "triton") as on_triton,
        ):
            contenders = {
                "c gateway, embedded": grpc_contender(
                    texts, embedded.address, embedded.create_tenant_key("bench")
                ),
                "d gateway, triton": grpc_contender(
                    texts, on_triton.address, on_triton.create_tenant_key("bench")
                ),
            }
            for contender in contenders.values():  # warm-up
                contender()
            timings: dict[str, list[float]] = {name: [] for name in contenders}
            outputs: dict[str, np.ndarray] = {}
            moved = dict.fromkeys(model_counters(triton.metrics_url, BACKBONE), 0.0)
            for _ in range(rounds):
                for name, contender in contenders.items():
                    before = model_counters(triton.metrics_url, BACKBONE)
                    outputs[name] = best_throughput(contender, len(texts), timings[name])
                    after = model_counters(triton.metrics_url, BACKBONE)
                    for counter in moved:
                        moved[counter] += after[counter] - before[counter]

    c, d = (outputs[name] for name in contenders)
    cosine = float(((c * d).sum(1) / np.linalg.norm(c, axis=1) / np.linalg.norm(d, axis=1)).min())
    for name, rates in timings.items():
        print(
            f"{name:22s} {max(rates):8.1f} texts/s  (rounds: {', '.join(f'{t:.1f}' for t in rates)})"
        )
    print(f"min cosine d vs c {cosine:.6f}")
    requests = moved["nv_inference_request_success"]
    executions = moved["nv_inference_exec_count"]
    print(
        f"triton: {requests:.0f} calls, {moved['nv_inference_count']:.0f} sequences, "
        f"{executions:.0f} executions; average batch size {moved['nv_inference_count'] / executions:.1f} "
        f"sequences; queue {moved['nv_inference_queue_duration_us'] / requests / 1000:.1f} ms a call, "
        f"compute {moved['nv_inference_compute_infer_duration_us'] / executions / 1000:.1f} ms an execution"
    )
    print(f"cores: {os.cpu_count()} shared by the client, the gateways and Triton")
    best_c, best_d = (max(timings[name]) for name in contenders)
    print(f"ratio {best_d / best_c:.3f}")
