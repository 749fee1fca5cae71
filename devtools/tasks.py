"""Labelled tasks on which transfer from a frozen backbone fails, built offline (tests, benchmarks).

A from-scratch model on the raw input beats the pretrained features on each by a wide margin:
labels that hinge on an exact code, and images whose class is where something is, not what.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Long, varied tickets: the code is a few tokens of forty, so a pooled sentence embedding
# carries little of it.
FILLERS = (
    "Hi team, could someone look at error {code} before the weekly review on Thursday? The "
    "dashboard has been red since the morning and the on-call engineer is out.",
    "The customer called twice about error {code}; they want an update soon and asked whether "
    "the contract covers this kind of outage at all.",
    "Escalated error {code} to second-line support after the first fix did not hold overnight, "
    "and the logs from the night shift are attached.",
    "Reminder: error {code} is still waiting for a signature from finance, who said they would "
    "look at it after the quarterly close.",
    "Our records show error {code} was opened last month and never assigned; nobody on the rota "
    "remembers who created the ticket.",
    "Can you confirm whether error {code} includes the shipping costs or only the goods? The "
    "invoice and the order do not agree.",
)


def code_task(pairs: int = 24, repeats: int = 4, seed: int = 3) -> list[tuple[str, str]]:
    """Labels that hinge on an exact code: pairs of error codes that differ only by two swapped
    digits (E3125 / E3152) take opposite labels, in support tickets whose wording is random.
    Sentence embeddings of such pairs are nearly equal; character n-grams tell them apart."""
    rng = np.random.default_rng(seed)
    codes: list[tuple[str, str]] = []
    for _ in range(pairs):
        digits = "".join(rng.choice(list("123456789"), 4, replace=False))
        swapped = digits[:2] + digits[3] + digits[2]
        codes += [(f"E{digits}", "refund"), (f"E{swapped}", "replace")]
    return [
        (FILLERS[rng.integers(len(FILLERS))].format(code=code), label)
        for _ in range(repeats)
        for code, label in codes
    ]


def arrangement_task(count: int = 120, seed: int = 0) -> list[tuple[bytes, str]]:
    """Noise with a red square in one half and a blue square in the other: the label is which
    side the red one is on. Pooled ImageNet features see a red and a blue square in every image,
    hardly where they are; 32x32 pixels see both."""
    rng = np.random.default_rng(seed)
    red, blue = np.array([255, 0, 0], np.uint8), np.array([0, 0, 255], np.uint8)
    examples = []
    for i in range(count):
        pixels = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        red_side = i % 2
        for colour, half in ((red, red_side), (blue, 1 - red_side)):
            top, left = rng.integers(0, 96), rng.integers(0, 40) + half * 56
            pixels[top : top + 16, left : left + 16] = colour
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        examples.append((buffer.getvalue(), "red-right" if red_side else "red-left"))
    return examples
