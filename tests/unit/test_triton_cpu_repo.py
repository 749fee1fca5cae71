"""The CPU flavour of the model repository is the production config with only the backend changed."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from devtools.triton.cpu_repo import CpuModelOptions, cpu_config, load_config

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "model_repo" / "all-minilm-l6-v2"
KIND_CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_everything_but_backend_devices_and_parameters_is_the_production_config() -> None:
    gpu = load_config(FOLDER)
    cpu = cpu_config(gpu, CpuModelOptions(python_env=Path("/env"), intra_op_threads=3))
    assert (cpu.name, cpu.max_batch_size) == (gpu.name, gpu.max_batch_size)
    assert list(cpu.input) == list(gpu.input) and list(cpu.output) == list(gpu.output)
    assert cpu.dynamic_batching == gpu.dynamic_batching
    assert list(cpu.dynamic_batching.preferred_batch_size) == [16, 32, 64]
    assert cpu.dynamic_batching.max_queue_delay_microseconds == 2000


def test_it_runs_on_the_python_backend_on_cpu_in_the_given_environment() -> None:
    gpu = load_config(FOLDER)
    assert gpu.platform == "onnxruntime_onnx"
    cpu = cpu_config(gpu, CpuModelOptions(python_env=Path("/env"), intra_op_threads=3))
    assert cpu.backend == "python" and not cpu.platform
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(KIND_CPU, 1)]
    assert cpu.parameters["EXECUTION_ENV_PATH"].string_value == "/env"
    assert cpu.parameters["INTRA_OP_THREADS"].string_value == "3"
    # It is valid config text that Triton (and this parser) reads back.
    text = text_format.MessageToString(cpu)
    assert text_format.Parse(text, model_config_pb2.ModelConfig()) == cpu


def test_gpu_only_optimizations_are_dropped() -> None:
    gpu = load_config(FOLDER)
    gpu.optimization.cuda.graphs = True
    assert not cpu_config(gpu, CpuModelOptions()).HasField("optimization")
    assert "EXECUTION_ENV_PATH" not in cpu_config(gpu, CpuModelOptions()).parameters
