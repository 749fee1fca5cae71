"""A model name (and version) of the Open Inference Protocol → a backbone or a head of the caller.

Backbones are the server's (the same for every tenant); heads are the caller's tenant's, so the
same name may be a head of several tenants, and another tenant's head is NOT_FOUND like one that
does not exist. A head may be named like a backbone (both follow the same pattern): the backbone
wins. Resolving a backbone then never reads the database (as Embed does not), and every tenant
gets the same answer for the server's models; a tenant's head of that name stays reachable
through Predict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.api.oip.signatures import Signature, backbone_signature, head_signature
from service.backbones.embedder import Embedder, ServedBackbone
from service.backbones.fused import HeadBackbones, head_backbones
from service.errors import FailedPrecondition, InvalidArgument, NotFound, shown
from service.store.registry import HEAD_NAME, HeadRegistry, StoredHead

#: A backbone has one version: the export the server serves.
BACKBONE_VERSION = "1"
# A head version: a positive number ("0" is the latest, as in Predict), at most 9 digits.
_HEAD_VERSION = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class BackboneModel:
    served: ServedBackbone
    signature: Signature

    @property
    def name(self) -> str:
        return self.served.card.name

    def is_ready(self) -> bool:
        return self.served.runtime.is_ready()


@dataclass(frozen=True)
class HeadModel:
    """A head version of the caller's tenant.

    Attributes:
        card: The version's card.
        asked_version: The version the request named (0: the latest).
        backbones: The backbone (or a fused head's parts) that embeds its inputs; None when it
            cannot (not served, or exported again since the head was trained).
    """

    card: StoredHead
    asked_version: int
    backbones: HeadBackbones | None
    signature: Signature

    @property
    def name(self) -> str:
        return self.card.name

    def is_ready(self) -> bool:
        return self.backbones is not None and self.backbones.is_ready() and self.card.damage is None


Model = BackboneModel | HeadModel


class Models:
    """Finds the models a tenant may call: every backbone, and its own heads."""

    def __init__(self, embedder: Embedder, registry: HeadRegistry) -> None:
        self._embedder = embedder
        self._registry = registry
        # Backbones are fixed at start-up.
        self._backbones = {served.card.name: served for served in embedder.served()}

    async def find(self, tenant: str, name: str, version: str, field: str = "") -> Model:
        """The model called `name`, at `version` ("": a head's latest).

        Args:
            field: The prefix of the request's fields, as errors name them ("model_" in
                ModelInfer: model_name, model_version; "" in ModelReady and ModelMetadata).

        Raises:
            InvalidArgument: no name, or a version that is not a number.
            NotFound: neither a backbone nor a head of the tenant (or no such version).
        """
        if not name:
            raise InvalidArgument(
                f"{field}name", "is required: a backbone (ListBackbones) or one of your heads"
            )
        served = self._backbones.get(name)
        if served is not None:
            if version not in ("", BACKBONE_VERSION):
                raise NotFound(
                    f"backbone {shown(name)} has one version, {BACKBONE_VERSION}; "
                    f"not {shown(version)}"
                )
            return BackboneModel(served, backbone_signature(served.card))
        if version and not _HEAD_VERSION.fullmatch(version):
            raise InvalidArgument(
                f"{field}version", f"{shown(version)} is not a version number (empty: the latest)"
            )
        number = int(version or 0)
        if not HEAD_NAME.fullmatch(name):  # not a name any head can have
            raise _not_found(name, number)
        try:
            card = await self._registry.get(tenant, name, number)
        except NotFound:
            raise _not_found(name, number) from None
        backbones = self._backbones_of(card)
        modality = backbones.modality if backbones is not None else None
        return HeadModel(card, number, backbones, head_signature(card, modality))

    async def versions(self, tenant: str, model: Model) -> list[str]:
        """The versions of the model a request may name."""
        if isinstance(model, BackboneModel):
            return [BACKBONE_VERSION]
        return [str(number) for number in await self._registry.versions(tenant, model.name)]

    def _backbones_of(self, card: StoredHead) -> HeadBackbones | None:
        try:
            return head_backbones(self._embedder, card)
        except FailedPrecondition:
            return None


def _not_found(name: str, version: int) -> NotFound:
    """The one wording of a missing model: another tenant's head reads the same."""
    if version:
        return NotFound(f"model {shown(name)} version {version} not found among your heads")
    return NotFound(f"model {shown(name)} not found: neither a backbone nor one of your heads")
