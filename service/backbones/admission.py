"""Admission per tenant and per backbone, counted in tokens (text) or pixels (images).

A request's cost is estimated before any work is done for it (before tokenizing or decoding) and
held until the request ends. A backbone's capacity is shared by the tenants that hold some of it:
each one's share is the capacity divided by their number (the caller included). A tenant over its
share is refused with RESOURCE_EXHAUSTED; one that holds nothing is always let in with one
request (within the per-request limits), so however others flood, every tenant makes progress.
Both runtimes sit behind the same gate: it lives in the Embedder, above them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service import metrics, tracing
from service.errors import ResourceExhausted
from service.tenancy.principal import current_principal

# Whose work it is when there is no authenticated tenant (in-process use, tests; the admin key
# never gets here: the servicers refuse it). Not a valid tenant name.
LOCAL_TENANT = "~local"


def calling_tenant() -> str:
    """The tenant of the current request, for fair shares (never raises)."""
    try:
        principal = current_principal()
    except RuntimeError:
        return LOCAL_TENANT
    return principal.tenant or LOCAL_TENANT


@dataclass
class Ticket:
    """What one admitted request holds; `release` gives it back (idempotent)."""

    gate: AdmissionGate = field(repr=False)
    tenant: str
    cost: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._give_back(self.tenant, self.cost)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class AdmissionGate:
    """One backbone's capacity, shared fairly by the tenants using it.

    Args:
        backbone: The backbone's name (messages, metrics label).
        capacity: Cost the backbone may hold in all (queued, decoding or running).
        unit: What the cost counts ("tokens", "pixels"), for messages.
    """

    def __init__(self, backbone: str, capacity: int, unit: str) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.backbone = backbone
        self.capacity = capacity
        self.unit = unit
        self._held: dict[str, int] = {}
        self._refusals = metrics.ADMISSION_REFUSALS.labels(backbone=backbone)

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    def share(self, tenant: str) -> int:
        """The tenant's share now: the capacity over the tenants holding some, it included."""
        tenants = len(self._held) + (0 if tenant in self._held else 1)
        return self.capacity // tenants

    def admit(self, tenant: str, cost: int) -> Ticket:
        """Lets a request of `cost` in for `tenant`, or refuses it.

        Raises:
            ResourceExhausted: the tenant already holds some and this would take it over its share.
        """
        if not tracing.enabled():
            return self._admit(tenant, cost)
        attributes: tracing.Attributes = {
            "transferd.backbone": self.backbone,
            "transferd.share": tenant,  # whose share: the tenant, or "~training" for a job
            "transferd.cost": cost,
        }
        with tracing.span("admission", attributes):  # a refusal: error.type ResourceExhausted
            return self._admit(tenant, cost)

    def _admit(self, tenant: str, cost: int) -> Ticket:
        held = self.held(tenant)
        share = self.share(tenant)
        if held and held + cost > share:
            self._refusals.inc()
            raise ResourceExhausted(
                f"this tenant's share of backbone '{self.backbone}' is in use ({held} of "
                f"{share} {self.unit} queued; this request needs {cost}); retry when some of "
                "its requests have finished"
            )
        self._held[tenant] = held + cost
        return Ticket(self, tenant, cost)

    def _give_back(self, tenant: str, cost: int) -> None:
        left = self._held.get(tenant, 0) - cost
        if left > 0:
            self._held[tenant] = left
        else:
            self._held.pop(tenant, None)
