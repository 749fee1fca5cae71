"""A classification head's validation confusion matrix: per-class scores, a text table, and a
picture (drawn with Pillow, which the service already needs, rather than a plotting library)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_COLUMN_WIDTH = 14  # characters of a label shown above a column of the text table


@dataclass(frozen=True)
class ClassScores:
    """One label's validation scores: precision (of the predictions of it), recall (of its
    examples), F1, and support (its examples)."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


def class_scores(labels: list[str], matrix: list[list[int]]) -> list[ClassScores]:
    """Per-label scores from counts (rows true, columns predicted); 0 where undefined."""
    counts = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(counts)
    predicted = counts.sum(axis=0)
    actual = counts.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return [
        ClassScores(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, actual, strict=True)
    ]


def _short(label: str, width: int) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def table(labels: list[str], matrix: list[list[int]]) -> str:
    """The matrix as aligned text, with each row's precision, recall, F1 and support."""
    scores = class_scores(labels, matrix)
    row_width = max(len("true \\ predicted"), *(len(label) for label in labels))
    widths = [max(len(_short(label, MAX_COLUMN_WIDTH)), 3) for label in labels]
    header = "true \\ predicted".ljust(row_width) + "  "
    header += "  ".join(
        _short(lab, MAX_COLUMN_WIDTH).rjust(w) for lab, w in zip(labels, widths, strict=True)
    )
    header += "  | precision  recall      f1  support"
    lines = [header]
    for label, row, score in zip(labels, matrix, scores, strict=True):
        cells = "  ".join(str(count).rjust(w) for count, w in zip(row, widths, strict=True))
        lines.append(
            f"{label.ljust(row_width)}  {cells}  | {score.precision:9.2f} {score.recall:7.2f} "
            f"{score.f1:7.2f} {score.support:8d}"
        )
    return "\n".join(lines)


# The picture's geometry, in pixels.
_CELL = 56
_PAD = 12
_FONT_SIZE = 14
_SCORE_COLUMNS = ("precision", "recall", "f1", "support")
_SCORE_WIDTH = 76


def plot(labels: list[str], matrix: list[list[int]], title: str, out: Path) -> None:
    """Draws the matrix as a heat map (each row shaded by its share, so rare classes show as
    clearly as common ones) with the per-class scores beside it, as a PNG at `out`."""
    font = ImageFont.load_default(size=_FONT_SIZE)
    counts = np.asarray(matrix, dtype=np.int64)
    scores = class_scores(labels, matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    label_width = int(max(font.getlength(label) for label in labels)) + _PAD
    left = _PAD + label_width
    top = _PAD * 3 + label_width  # column labels are written upwards, as long as row labels
    n = len(labels)
    width = left + n * _CELL + _PAD + len(_SCORE_COLUMNS) * _SCORE_WIDTH + _PAD
    height = top + n * _CELL + _PAD * 3 + _FONT_SIZE
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_PAD, _PAD), title, fill="black", font=font)
    for j, label in enumerate(labels):  # predicted labels, upwards above their column
        _upwards(image, label, font, (left + j * _CELL + _CELL // 2 - _FONT_SIZE // 2, top - _PAD))
    for k, name in enumerate(_SCORE_COLUMNS):
        x = left + n * _CELL + _PAD + k * _SCORE_WIDTH
        draw.text((x, top - _PAD - _FONT_SIZE), name, fill="black", font=font)
    for i, label in enumerate(labels):
        y = top + i * _CELL
        draw.text((_PAD, y + _CELL // 2), label, fill="black", font=font, anchor="lm")
        for j in range(n):
            x = left + j * _CELL
            shade = int(255 * (1 - 0.8 * shares[i, j]))
            draw.rectangle((x, y, x + _CELL, y + _CELL), fill=(shade, shade, 255), outline="gray")
            ink = "white" if shares[i, j] > 0.5 else "black"
            centre = (x + _CELL // 2, y + _CELL // 2)
            draw.text(centre, str(counts[i, j]), fill=ink, font=font, anchor="mm")
        score = scores[i]
        values = (f"{score.precision:.2f}", f"{score.recall:.2f}", f"{score.f1:.2f}",
                  str(score.support))  # fmt: skip
        for k, value in enumerate(values):
            x = left + n * _CELL + _PAD + k * _SCORE_WIDTH
            draw.text((x, y + _CELL // 2), value, fill="black", font=font, anchor="lm")
    footer = "rows: true label, columns: predicted label; shade: share of the row"
    draw.text((_PAD, top + n * _CELL + _PAD), footer, fill="gray", font=font)
    image.save(out, format="PNG")


def _upwards(
    image: Image.Image,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    bottom_left: tuple[int, int],
) -> None:
    """Writes `text` reading upwards, its baseline end at `bottom_left`."""
    length = int(font.getlength(text)) + 2
    strip = Image.new("RGB", (length, _FONT_SIZE + 4), "white")
    ImageDraw.Draw(strip).text((0, 0), text, fill="black", font=font)
    turned = strip.rotate(90, expand=True)
    image.paste(turned, (bottom_left[0], bottom_left[1] - turned.height))
