"""The typed Python client of transferd: `Client` (blocking) and `AsyncClient` (asyncio).

Both take `url`, `api_key`, `tls` and a per-call `timeout`; errors are `TransferdError` with the
gRPC status code and the server's message. UNAVAILABLE is retried with backoff for the calls that
are safe to repeat. Other languages use the generated stubs of protos/ directly (README).
"""

from transferd.client.aio import AsyncClient, AsyncJob
from transferd.client.sync import Client, Job
from transferd.client.types import (
    ApiKey,
    Example,
    HeadInfo,
    JobStatus,
    KeyInfo,
    Prediction,
    TenantDeletion,
    TenantInfo,
    TransferdError,
)

__all__ = [
    "ApiKey",
    "AsyncClient",
    "AsyncJob",
    "Client",
    "Example",
    "HeadInfo",
    "Job",
    "JobStatus",
    "KeyInfo",
    "Prediction",
    "TenantDeletion",
    "TenantInfo",
    "TransferdError",
]
