"""Who is calling: set by the auth interceptor, read by the servicers. Never from the request body."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from service.errors import PermissionDenied


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the admin, or one tenant."""

    tenant: str | None  # None for the admin key
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.tenant is None


_current: ContextVar[Principal | None] = ContextVar("transferd_principal", default=None)


def set_principal(principal: Principal) -> None:
    _current.set(principal)


def current_principal() -> Principal:
    principal = _current.get()
    if principal is None:  # a servicer reached without the auth interceptor: a wiring bug
        raise RuntimeError("no authenticated principal in this context")
    return principal


def current_principal_or_none() -> Principal | None:
    """The caller, or None before (or without) authentication."""
    return _current.get()


def current_tenant() -> str:
    """The calling tenant; the admin key has none and may not act as a tenant."""
    principal = current_principal()
    if principal.tenant is None:
        raise PermissionDenied("the admin key has no tenant; call this with a tenant's API key")
    return principal.tenant


def require_admin() -> None:
    if not current_principal().is_admin:
        raise PermissionDenied("only the admin key may manage tenants and keys")
