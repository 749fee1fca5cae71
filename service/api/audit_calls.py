"""Which calls the audit log records, and what each line says (see `service.audit`).

Every TenantService call that passed authentication (whatever its outcome: a tenant's key on it
is PERMISSION_DENIED, and recorded), and every DeleteHead. A call refused at authentication is
one `auth.refused` line instead, written by the interceptor. The lines name the caller's key id
and the tenant acted on, and what the call did (a new key's id and expiry, a deleted tenant's
counts); never a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from service import audit
from service.tenancy.principal import Principal, current_principal_or_none

TENANTS = "/transferd.v1.TenantService/"
DELETE_HEAD = "/transferd.v1.HeadService/DeleteHead"


def _timestamp(reply: Any, field: str) -> str:
    return getattr(reply, field).ToJsonString() if reply.HasField(field) else ""


# What each audited method adds to its line, from its request and (when it succeeded) its reply.
Details = Callable[[Any, Any | None], dict[str, Any]]
_DETAILS: dict[str, Details] = {
    "CreateApiKey": lambda request, reply: {
        "ttl_seconds": request.ttl_seconds,
        **(
            {"new_key_id": reply.key_id, "expires_at": _timestamp(reply, "expires_at")}
            if reply is not None
            else {}
        ),
    },
    "RevokeApiKey": lambda request, reply: {"revoked_key_id": request.key_id},
    "ListApiKeys": lambda request, reply: {"keys": len(reply.keys)} if reply is not None else {},
    "DeleteTenant": lambda request, reply: (
        {
            "keys_revoked": reply.keys_revoked,
            "jobs_stopped": reply.jobs_stopped,
            "head_versions_deleted": reply.head_versions_deleted,
        }
        if reply is not None
        else {}
    ),
}


class AuditedCall:
    """One audited call: its request and reply once known; `done` writes its line."""

    def __init__(self, full_method: str, context: grpc.aio.ServicerContext) -> None:
        self._full_method = full_method
        self._name = full_method.rpartition("/")[2]
        self._peer = context.peer() or ""
        self.request: Any = None
        self.reply: Any = None

    def done(self, code: grpc.StatusCode) -> None:
        principal: Principal | None = current_principal_or_none()
        if principal is None:  # refused at authentication: `auth.refused` says it
            return
        request, reply = self.request, self.reply if code is grpc.StatusCode.OK else None
        if self._full_method == DELETE_HEAD:
            details: dict[str, Any] = (
                {"head": request.head, "version": request.version} if request is not None else {}
            )
            audit.record(
                "head.delete", tenant=principal.tenant or "", key_id=principal.key_id,
                peer=self._peer, outcome=code.name, **details,
            )  # fmt: skip
            return
        target = getattr(request, "tenant", "") if request is not None else ""
        extra = _DETAILS.get(self._name)
        details = extra(request, reply) if extra is not None and request is not None else {}
        audit.record(
            f"admin.{self._name}", tenant=target, key_id=principal.key_id, peer=self._peer,
            outcome=code.name, **details,
        )  # fmt: skip


def audited(full_method: str, context: grpc.aio.ServicerContext) -> AuditedCall | None:
    """The call's audit record, or None for a method the audit log does not record."""
    if full_method.startswith(TENANTS) or full_method == DELETE_HEAD:
        return AuditedCall(full_method, context)
    return None
