"""Prometheus metrics: `transferd_` prefix, explicit buckets, never a tenant label (unbounded)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Geometric latency buckets: 0.5 ms .. ~9 min, doubling (training jobs take seconds to minutes).
LATENCY_BUCKETS = tuple(0.0005 * 2**i for i in range(21))
# Powers of two for batch sizes: 1 .. 1024.
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))

REQUESTS = Counter(
    "transferd_requests", "RPCs handled, by method and status code.", ["method", "code"]
)
REQUEST_LATENCY = Histogram(
    "transferd_request_duration_seconds",
    "RPC latency from the first byte to the reply, by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
AUTH_REFUSED = Counter(
    "transferd_auth_refused",
    "Calls refused for their API key, by reason: missing (or not 'Bearer <key>'), unknown "
    "(never issued, forged, or its tenant deleted), revoked, expired.",
    ["reason"],
)
AUDIT_LINES_SUPPRESSED = Counter(
    "transferd_audit_lines_suppressed",
    "Audit lines of refused authentications not written because their peer was over its rate "
    "(each peer's count is written once its window ends).",
)
EMBEDDED_INPUTS = Counter(
    "transferd_embedded_inputs",
    "Inputs turned into embeddings by a backbone, by backbone (embedding cache hits not counted).",
    ["backbone"],
)
EMBEDDING_CACHE_HITS = Counter(
    "transferd_embedding_cache_hits",
    "Inputs whose embedding came from the cache (the tenant had embedded them before), by "
    "backbone.",
    ["backbone"],
)
EMBEDDING_CACHE_MISSES = Counter(
    "transferd_embedding_cache_misses",
    "Inputs looked up in the embedding cache and not found, by backbone (computed, or taken "
    "from a request computing them at that moment).",
    ["backbone"],
)
EMBEDDING_CACHE_EVICTIONS = Counter(
    "transferd_embedding_cache_evictions",
    "Embeddings dropped from the cache to keep it within TRANSFERD_EMBEDDING_CACHE_MB.",
)
EMBEDDING_CACHE_BYTES = Gauge(
    "transferd_embedding_cache_bytes", "Memory the embedding cache holds, in bytes (estimated)."
)
EMBEDDING_CACHE_ENTRIES = Gauge("transferd_embedding_cache_entries", "Embeddings the cache holds.")
BATCH_SIZE = Histogram(
    "transferd_batch_size",
    "Sequences per backbone inference call.",
    ["backbone"],
    buckets=BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "transferd_queue_depth", "Inputs waiting for a backbone inference call.", ["backbone"]
)
ADMISSION_REFUSALS = Counter(
    "transferd_admission_refusals",
    "Requests refused (RESOURCE_EXHAUSTED) because their tenant was over its share of a backbone.",
    ["backbone"],
)
DROPPED_INPUTS = Counter(
    "transferd_dropped_inputs",
    "Queued inputs dropped before inference or decoding: their RPC was cancelled or expired.",
    ["backbone"],
)
INFERENCE_LATENCY = Histogram(
    "transferd_inference_duration_seconds",
    "Time of one backbone inference call.",
    ["backbone", "runtime"],
    buckets=LATENCY_BUCKETS,
)
JOBS_FINISHED = Counter(
    "transferd_training_jobs", "Training jobs that ended, by final state.", ["state"]
)
NEGATIVE_TRANSFER = Counter(
    "transferd_negative_transfer_heads",
    "Heads published although a model trained from scratch on the raw input beat them "
    "(heads.transfer), by backbone.",
    ["backbone"],
)
JOB_WRITE_FAILURES = Counter(
    "transferd_job_write_failures",
    "Job state writes that raised (progress is best effort; a final state is retried).",
)
JOBS_ACTIVE = Gauge(
    "transferd_training_jobs_active",
    "Training jobs queued or running in the database (every replica's, as this one last read it).",
)
JOB_DURATION = Histogram(
    "transferd_training_job_duration_seconds",
    "Time from TrainHead to the job's end, by final state.",
    ["state"],
    buckets=LATENCY_BUCKETS,
)
HEADS_CACHED = Gauge("transferd_heads_cached", "Heads loaded in the in-memory LRU.")
HEAD_CACHE_BYTES = Gauge(
    "transferd_head_cache_bytes",
    "Estimated memory of the heads loaded in the LRU (bounded by TRANSFERD_HEAD_CACHE_MB).",
)
HEADS_QUARANTINED = Gauge(
    "transferd_heads_quarantined",
    "Head folders under heads/.quarantine (no database row; `transferd repair` restores them).",
)
DATABASE_INTACT = Gauge(
    "transferd_database_intact",
    "1 while the database file is the one opened at start-up; 0 once removed or replaced.",
)
DATABASE_ERRORS = Counter(
    "transferd_database_unavailable_total",
    "Database calls answered UNAVAILABLE because PostgreSQL could not be reached.",
)
WARM_UP_CALLS = Counter(
    "transferd_warm_up_calls",
    "Warm-up inference calls run at start-up, before the backbone reported ready.",
    ["backbone"],
)
BACKBONE_READY = Gauge(
    "transferd_backbone_ready", "1 when the backbone can serve, else 0.", ["backbone", "runtime"]
)


class MetricsPortError(RuntimeError):
    """The metrics port cannot be bound (another replica on this host holds it, most often); the
    port itself is served by `service.metrics_port`."""
