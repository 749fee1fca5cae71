"""Fused backbones: several served backbones of one modality whose embeddings a head takes side
by side, each times its weight (`heads.fusion`).

A fused backbone is named by its parts joined with "+", in order: `all-minilm-l6-v2+all-mpnet-
base-v2`. It is not served on its own: TrainHead embeds the examples with every part, and Predict
embeds each input with every part, concurrently, through each part's cache and fair batcher.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from heads import HeadCard
from heads.fusion import MAX_PARTS, SEPARATOR, fuse
from service.backbones.embedder import Embedder, ServedBackbone
from service.backbones.inputs import Input
from service.errors import FailedPrecondition, InvalidArgument


def is_fused(name: str) -> bool:
    return SEPARATOR in name


def fused_parts(embedder: Embedder, name: str, field: str = "backbone") -> list[ServedBackbone]:
    """The served parts of a fused backbone's name, checked: the name is canonical (parts in the
    order given, none repeated), and every part is served and of one modality.

    Raises:
        InvalidArgument: naming `field` and the part at fault.
    """
    names = name.split(SEPARATOR)
    if len(names) > MAX_PARTS:
        raise InvalidArgument(field, f"a fused backbone joins at most {MAX_PARTS} backbones")
    parts: list[ServedBackbone] = []
    for index, part in enumerate(names):
        where = f"part {index + 1} of {name!r}"
        if not part:
            raise InvalidArgument(field, f"{where} is empty: join backbone names with '+'")
        if part in names[:index]:
            raise InvalidArgument(field, f"{where}: {part!r} is already a part")
        try:
            served = embedder.get(part, field)
        except InvalidArgument as error:
            raise InvalidArgument(field, f"{where}: {error.message}") from None
        if parts and served.card.modality != parts[0].card.modality:
            raise InvalidArgument(
                field,
                f"{where}: {part!r} embeds {served.card.modality}s, "
                f"{parts[0].card.name!r} {parts[0].card.modality}s; parts share one modality",
            )
        parts.append(served)
    return parts


@dataclass(frozen=True)
class HeadBackbones:
    """What embeds a head's inputs: one served backbone (weight 1), or a fused head's parts and
    their weights."""

    parts: list[ServedBackbone]
    weights: list[float]

    @property
    def modality(self) -> str:
        return self.parts[0].card.modality

    def is_ready(self) -> bool:
        return all(part.runtime.is_ready() for part in self.parts)

    def check_input(self, embedder: Embedder, item: Input, where: str) -> None:
        """The input must suit every part (their limits may differ)."""
        for part in self.parts:
            embedder.check_input(part, item, where)

    async def embed(
        self, embedder: Embedder, inputs: list[Input], wheres: list[str], tenant: str
    ) -> np.ndarray:
        """The head's input rows: one part's embeddings, or every part's, embedded
        concurrently and joined with their weights."""
        results = await asyncio.gather(
            *(
                embedder.embed(part.card.name, inputs, wheres=wheres, tenant=tenant)
                for part in self.parts
            )
        )
        if len(results) == 1:
            return results[0].vectors
        return fuse([result.vectors for result in results], self.weights)


def head_backbones(embedder: Embedder, card: HeadCard) -> HeadBackbones:
    """The served backbones a head was trained on, as it was trained on them.

    Raises:
        FailedPrecondition: a backbone (or a fused head's part, named) is not served, or was
            exported again since the head was trained (another fingerprint).
    """
    if not card.fusion:
        return HeadBackbones(
            [_served(embedder, card, card.backbone, card.backbone_fingerprint)], [1.0]
        )
    fingerprints = card.backbone_fingerprint.split(SEPARATOR)
    return HeadBackbones(
        [
            _served(embedder, card, part.backbone, fingerprint)
            for part, fingerprint in zip(card.fusion, fingerprints, strict=True)
        ],
        [part.weight for part in card.fusion],
    )


def _served(embedder: Embedder, card: HeadCard, backbone: str, fingerprint: str) -> ServedBackbone:
    what = f"part '{backbone}' of its fused backbone" if card.fusion else f"backbone '{backbone}'"
    try:
        served = embedder.get(backbone)
    except InvalidArgument:
        raise FailedPrecondition(
            f"head '{card.name}' v{card.version} needs {what}, which this server does not serve"
        ) from None
    if served.card.fingerprint != fingerprint:
        raise FailedPrecondition(
            f"head '{card.name}' v{card.version} was trained on a different export of {what} "
            f"(fingerprint {fingerprint[:12]}, served {served.card.fingerprint[:12]}); "
            "train it again"
        )
    return served
