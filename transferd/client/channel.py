"""Channels to transferd: the API key, TLS, and retries of the idempotent calls.

Over TLS the key travels as call credentials (`authorization: Bearer <key>`, which gRPC sends only
on secure channels); on an insecure channel, meant for localhost, it is added as the same
metadata by the client itself. UNAVAILABLE is retried with exponential backoff by gRPC's own
retry policy (the service config below), for calls that change nothing or that are safe to repeat.
"""

from __future__ import annotations

import json

import grpc

#: Calls that may be repeated: reading, embedding and predicting change nothing.
IDEMPOTENT = {
    "transferd.v1.EmbeddingService": ["ListBackbones", "Embed"],
    "transferd.v1.HeadService": ["GetJob", "WatchJob", "ListHeads", "GetHead", "Predict"],
    "transferd.v1.TenantService": ["ListTenants", "ListApiKeys"],
}
RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
#: Large enough for the server's own request and reply limits (64 MiB by default).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def service_config() -> str:
    names = [
        {"service": service, "method": method}
        for service, methods in IDEMPOTENT.items()
        for method in methods
    ]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}]})


def options() -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", service_config()),
        ("grpc.enable_retries", 1),
        # Reconnect within the retries' backoff (gRPC's default waits a full second first).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def credentials(
    api_key: str | None, tls: bool | grpc.ChannelCredentials
) -> grpc.ChannelCredentials | None:
    """Channel credentials for TLS (None: insecure), carrying the key when one is given."""
    if tls is False:
        return None
    channel = grpc.ssl_channel_credentials() if tls is True else tls
    if api_key is None:
        return channel
    return grpc.composite_channel_credentials(channel, grpc.access_token_call_credentials(api_key))


def metadata(
    api_key: str | None, tls: bool | grpc.ChannelCredentials
) -> tuple[tuple[str, str], ...]:
    """The key as metadata on an insecure channel (over TLS the credentials carry it)."""
    if api_key is None or tls is not False:
        return ()
    return (("authorization", f"Bearer {api_key}"),)
