"""Settings: one pydantic-settings class; every field has a `TRANSFERD_` environment twin."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from heads.budget import DEFAULT_COST_CAPS


def normalized_database_url(url: str) -> str:
    """`url` with PostgreSQL's driver made psycopg 3 (the one installed); other databases are
    refused, since only SQLite and PostgreSQL are tested.

    Raises:
        ValueError: not a SQLAlchemy URL of SQLite or PostgreSQL (the message never shows the
            URL, which may hold a password).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("database_url is not a SQLAlchemy URL (dialect+driver://...)") from None
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return url
    raise ValueError(
        "database_url must be postgresql+psycopg://... or sqlite:///path, "
        f"not a {parsed.drivername} URL"
    )


class RuntimeKind(StrEnum):
    """Where backbones run."""

    EMBEDDED = "embedded"
    TRITON = "triton"


class Device(StrEnum):
    """Where the embedded runtime runs backbones (service/backbones/runtimes/device.py)."""

    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"


class Settings(BaseSettings):
    """Everything an operator can set. Validated at start-up: bad settings stop the server."""

    model_config = SettingsConfigDict(env_prefix="TRANSFERD_", extra="forbid")

    grpc_host: str = Field("0.0.0.0", description="Address the gRPC server binds to.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus metrics port (0 disables the endpoint)."
    )
    data_dir: Path = Field(
        Path("data"),
        description="Where jobs, heads and tenants are stored (the SQLite file and the head "
        "files); with database_url set to PostgreSQL, only this replica's cache of head files.",
    )
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the metadata database. Unset: the SQLite file under "
        "data_dir. postgresql+psycopg://user:password@host:5432/name: PostgreSQL, shared by "
        "every replica (tenants, keys, heads and their artifacts, jobs with their payload).",
    )
    change_poll_s: float = Field(
        10.0,
        gt=0,
        description="PostgreSQL: seconds between two re-reads of what a replica caches (active "
        "keys, head cards, loaded heads), which catch changes whose notice (LISTEN/NOTIFY) was "
        "lost while the replica was disconnected.",
    )
    model_repo: Path = Field(Path("model_repo"), description="Exported backbones, one per folder.")
    runtime: RuntimeKind = Field(RuntimeKind.EMBEDDED, description="embedded or triton.")
    triton_url: str = Field("localhost:8001", description="Triton gRPC address (runtime=triton).")
    device: Device = Field(
        Device.AUTO,
        description="Where the embedded runtime runs backbones: cpu, cuda (refuses to start "
        "without ONNX Runtime's CUDA provider, the gpu extra) or auto (CUDA when the provider "
        "is there and starts, else the CPU). int8 backbones always run on the CPU. The choice "
        "and its reason are logged per backbone.",
    )

    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate chain of the gRPC port; with tls_key_file, TLS on (re-read "
        "when the file changes).",
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA certificates: clients must present a certificate one of them signed "
        "(mTLS). Needs tls_cert_file and tls_key_file.",
    )
    admin_key: SecretStr | None = Field(
        None, description="Secret of the admin key, the only key that may call TenantService."
    )
    head_cache_size: int = Field(
        256, ge=1, description="Most loaded heads kept in memory (LRU), within head_cache_mb."
    )
    head_cache_mb: float = Field(
        512.0,
        gt=0,
        description="Most memory, in MiB, that loaded heads may hold in the LRU (estimated from "
        "each head's ONNX size); a larger head is served without being cached.",
    )
    embedding_cache_mb: float = Field(
        256.0,
        ge=0,
        description="Memory, in MiB, for embeddings already computed (LRU). Entries are per "
        "tenant and per backbone export: a tenant embedding, training on or predicting on inputs "
        "it sent before skips the backbone, and never sees another tenant's entries. 0 turns "
        "the cache off.",
    )
    max_heads_per_tenant: int = Field(
        1000, ge=1, description="Most heads (names with a live version) one tenant may store."
    )
    max_keys_per_tenant: int = Field(
        20,
        ge=1,
        description="Most live API keys (neither revoked nor expired) one tenant may hold; "
        "CreateApiKey past it is RESOURCE_EXHAUSTED.",
    )
    max_versions_per_head: int = Field(
        100, ge=1, description="Most live (not deleted) versions one head may have."
    )
    training_workers: int = Field(
        1,
        ge=0,
        description="Training jobs this replica runs at the same time; the rest wait in the "
        "database, each tenant's in order and tenants in turn (the tenant served longest ago "
        "goes next). 0: an API-only replica that queues jobs and runs none.",
    )
    job_lease_s: float = Field(
        30.0,
        ge=1.0,
        description="How long a replica's claim on a running job lasts without a heartbeat "
        "(renewed every third of it); a job whose replica died is claimed again after it.",
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        description="Most times a job is claimed (a replica died while running it, or a restart "
        "or shutdown interrupted it); past it the job is FAILED with the reason.",
    )
    max_job_payload_mb: float = Field(
        64.0,
        gt=0,
        description="Largest stored training request (the examples, compressed), in MiB; larger "
        "is refused with RESOURCE_EXHAUSTED.",
    )
    job_payload_retention_s: float = Field(
        0.0,
        ge=0,
        description="How long, in seconds, an ended job keeps its stored request (the examples) "
        "in the database; 0 drops it when the job ends. Swept every half of it (0.5 s to 60 s).",
    )
    job_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="Wall-clock limit of one training job from when it starts running; past it "
        "the job is stopped and FAILED with the reason.",
    )
    job_cost_caps: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_COST_CAPS),
        description="Per head kind, the most operations (about multiply-adds; one core does "
        "about 1.5e10 a second) a job's up-front estimate (examples x epochs x model size) may "
        'reach; more: INVALID_ARGUMENT at once. JSON, e.g. {"mlp": 1e14}; kinds left out keep '
        "their defaults.",
    )
    max_label_bytes: int = Field(
        256, ge=1, description="Longest label of a training example, in UTF-8 bytes."
    )
    max_labels_per_head: int = Field(
        10_000, ge=2, description="Most distinct labels one head may have."
    )
    max_jobs_per_tenant: int = Field(
        4,
        ge=1,
        description="Jobs one tenant may have queued or running (more: RESOURCE_EXHAUSTED).",
    )
    max_jobs_total: int = Field(
        64,
        ge=1,
        description="Jobs the server may have queued or running (more: RESOURCE_EXHAUSTED).",
    )
    max_examples_per_job: int = Field(
        20_000, ge=2, description="Most examples one TrainHead request may carry."
    )
    max_inputs_per_request: int = Field(
        1024, ge=1, le=10_000, description="Most inputs one Embed or Predict request may carry."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest request any RPC accepts; each method's own limit is sized to what it "
        "allows (inputs x largest input) and never above this. Checked before decoding.",
    )
    max_response_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest reply; a Predict whose reply would be larger is refused "
        "(RESOURCE_EXHAUSTED) before it is built.",
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
        description="Most padded tokens (sequences x longest, or x the length bucket on Triton) "
        "in one inference call the gateway makes, on either runtime; a single text longer than "
        "this runs alone.",
    )
    batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="How long the batcher waits to fill a batch when idle."
    )
    max_queued_inputs: int = Field(
        4_096,
        ge=1,
        description="A text backbone's capacity, in inputs of its full sequence length: it may "
        "hold this many x max_sequence_length tokens (estimated before tokenizing) queued or "
        "running, shared by the tenants using it; a tenant over its share (capacity / tenants "
        "using the backbone) gets RESOURCE_EXHAUSTED, a tenant holding nothing is always let in.",
    )
    max_queued_pixels: int = Field(
        400_000_000,
        ge=1,
        description="An image backbone's capacity in declared pixels (width x height from the "
        "header, before decoding) queued, decoding or running, shared like max_queued_inputs.",
    )
    image_decode_threads: int = Field(
        0,
        ge=0,
        description="Threads that decode images, apart from the text tokenizers "
        "(0: half the cores, at least 1).",
    )
    max_jpeg_scans: int = Field(
        64,
        ge=1,
        description="Most scans (SOS markers) a JPEG may hold; counted before decoding "
        "(normal progressive JPEGs have about 10). More: INVALID_ARGUMENT.",
    )
    inference_threads: int = Field(
        0, ge=0, description="ONNX Runtime intra-op threads per backbone (0: one per core)."
    )
    inference_lanes: int = Field(
        2,
        ge=1,
        le=16,
        description="Inference calls an embedded backbone runs at once, each for a different "
        "tenant: a tenant's small request runs beside another tenant's long call instead of "
        "behind it (1: one call at a time).",
    )
    preprocess_threads: int = Field(
        0, ge=0, description="Threads that tokenize text inputs (0: one per core)."
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
        120.0,
        ge=0,
        description="At start-up: how long to wait for the model to be ready on Triton.",
    )
    triton_max_calls_in_flight: int = Field(
        16,
        ge=1,
        description="Calls per backbone sent to Triton at once (Triton batches them); the rest "
        "wait in the gateway's fair per-tenant queues.",
    )

    @field_validator("job_cost_caps")
    @classmethod
    def _merge_cost_caps(cls, caps: dict[str, float]) -> dict[str, float]:
        # A typo would silently leave the real kind at its default: refuse unknown kinds.
        unknown = sorted(set(caps) - set(DEFAULT_COST_CAPS))
        if unknown:
            raise ValueError(
                f"job_cost_caps: unknown kind(s) {unknown}; known: {sorted(DEFAULT_COST_CAPS)}"
            )
        if any(not cap > 0 for cap in caps.values()):
            raise ValueError("job_cost_caps: every cap must be > 0")
        return {**DEFAULT_COST_CAPS, **caps}

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None or not url.get_secret_value():
            return None
        return SecretStr(normalized_database_url(url.get_secret_value()))

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
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given, missing = (
                ("tls_cert_file", "tls_key_file")
                if self.tls_key_file is None
                else ("tls_key_file", "tls_cert_file")
            )
            raise ValueError(f"{given} is set but {missing} is not: TLS needs both")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS is TLS)"
            )
        return self

    def effective_threads(self, configured: int) -> int:
        """Turns a `0 = one per core` setting into a thread count."""
        return configured or max(1, os.cpu_count() or 1)
