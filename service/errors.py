"""One exception hierarchy with semantic kinds; `service.api.interceptors` maps kinds to status codes.

Domain code raises these and never touches gRPC: the mapping to status codes lives in one place.
"""

from __future__ import annotations

# One spelling of "a value as errors echo it" for the service and the heads package.
from heads.errors import shown as shown


class TransferdError(Exception):
    """Base of every error the service reports to a client with a specific status code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TransferdError):
    """The request is malformed; `field` names the offending field, e.g. ``inputs[3].text``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(TransferdError):
    """The thing does not exist for this caller (another tenant's thing looks the same)."""


class AlreadyExists(TransferdError):
    """The thing to create exists already (e.g. a tenant of that name)."""


class Unauthenticated(TransferdError):
    """No key, a forged, revoked or expired key. `reason` is for the audit log and metrics only:
    the client gets one message for all, so that it learns nothing about which keys exist."""

    def __init__(self, message: str, reason: str = "unknown") -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(TransferdError):
    """A valid key that may not call this RPC."""


class ResourceExhausted(TransferdError):
    """Over a limit, or the server is overloaded; the client may retry later."""


class Unavailable(TransferdError):
    """A dependency (a backbone runtime) is down; the client may retry later."""


class FailedPrecondition(TransferdError):
    """The system is not in a state that allows the request (e.g. a head's backbone changed)."""


class DataLoss(TransferdError):
    """Stored data is damaged (a head file fails its checksum); the operator must restore it."""
