"""Settings: one pydantic-settings class; every field has a `TRANSFERD_` environment twin."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeKind(StrEnum):
    """Where backbones run."""

    EMBEDDED = "embedded"
    TRITON = "triton"


class Settings(BaseSettings):
    """Everything an operator can set. Validated at start-up: bad settings stop the server."""

    model_config = SettingsConfigDict(env_prefix="TRANSFERD_", extra="forbid")

    grpc_host: str = Field("0.0.0.0", description="Address the gRPC server binds to.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus metrics port (0 disables the endpoint)."
    )
    data_dir: Path = Field(Path("data"), description="Where jobs, heads and tenants are stored.")
    model_repo: Path = Field(Path("model_repo"), description="Exported backbones, one per folder.")
    runtime: RuntimeKind = Field(RuntimeKind.EMBEDDED, description="embedded or triton.")
    triton_url: str = Field("localhost:8001", description="Triton gRPC address (runtime=triton).")

    admin_key: SecretStr | None = Field(
        None, description="Secret of the admin key, the only key that may call TenantService."
    )
    head_cache_size: int = Field(256, ge=1, description="Loaded heads kept in memory (LRU).")
    training_workers: int = Field(
        1, ge=1, description="Training jobs that run at the same time; the rest wait in order."
    )
    max_jobs_per_tenant: int = Field(
        4, ge=1, description="Jobs one tenant may have queued or running (more: RESOURCE_EXHAUSTED)."
    )
    max_jobs_total: int = Field(
        64, ge=1, description="Jobs the server may have queued or running (more: RESOURCE_EXHAUSTED)."
    )
    max_examples_per_job: int = Field(
        20_000, ge=2, description="Most examples one TrainHead request may carry."
    )
    max_inputs_per_request: int = Field(
        1024, ge=1, le=10_000, description="Most inputs one Embed or Predict request may carry."
    )
    max_text_bytes: int = Field(
        16_384, ge=1, description="Longest text input in UTF-8 bytes (longer is refused, not cut)."
    )
    max_image_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest encoded image input (PNG or JPEG) in bytes."
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Most pixels (width x height) an image may declare; checked before decoding.",
    )
    max_batch_size: int = Field(
        64, ge=1, description="Most sequences in one inference call of an embedded backbone."
    )
    max_batch_tokens: int = Field(
        8_192,
        ge=1,
        description="Most padded tokens (sequences x longest) in one embedded inference call.",
    )
    batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="How long the batcher waits to fill a batch when idle."
    )
    max_queued_inputs: int = Field(
        4_096,
        ge=1,
        description="Inputs waiting for a backbone before new requests get RESOURCE_EXHAUSTED.",
    )
    inference_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads per backbone (0: one per core)."
    )
    preprocess_threads: int = Field(
        0, ge=0, description="Threads that tokenize and decode inputs (0: one per core)."
    )
    drain_delay_s: float = Field(
        2.0,
        ge=0,
        description="On SIGTERM: seconds health says NOT_SERVING while still serving, so that "
        "load balancers stop sending before the server stops accepting (SIGINT skips it).",
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="Then: seconds in-flight requests get to finish."
    )
    log_level: str = Field("INFO", description="Python logging level.")

    # Triton (runtime=triton): how the gateway calls it and rides out its restarts.
    triton_timeout_s: float = Field(
        10.0, gt=0, description="Deadline of one Triton inference call; then UNAVAILABLE."
    )
    triton_retries: int = Field(
        3, ge=0, le=10, description="Retries of a Triton call that failed with UNAVAILABLE."
    )
    triton_retry_backoff_s: float = Field(
        0.1, ge=0, description="Backoff before the first retry (doubles each retry, jittered)."
    )
    triton_probe_interval_s: float = Field(
        1.0, gt=0, description="How often Triton's readiness is checked (feeds gRPC health)."
    )
    triton_startup_timeout_s: float = Field(
        120.0, ge=0, description="At start-up: how long to wait for the model to be ready on Triton."
    )

    @field_validator("triton_url")
    @classmethod
    def _check_triton_url(cls, url: str) -> str:
        # tritonclient.grpc takes host:port; a scheme or a missing port fails later and obscurely.
        host, _, port = url.rpartition(":")
        if "://" in url or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"triton_url must be host:port (e.g. triton:8001), not {url!r}")
        return url

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.metrics_port and self.metrics_port == self.grpc_port:
            raise ValueError("metrics_port and grpc_port must differ")
        if self.max_batch_tokens < self.max_batch_size:
            raise ValueError("max_batch_tokens must be at least max_batch_size")
        return self

    def effective_threads(self, configured: int) -> int:
        """Turns a `0 = one per core` setting into a thread count."""
        return configured or max(1, os.cpu_count() or 1)
