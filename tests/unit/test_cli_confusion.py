"""`transferd heads show`: per-class scores, the text table, and the plotted matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support

from transferd.cli.confusion import class_scores, plot, table

LABELS = ["cooking", "finance", "a-very-long-label-name-indeed"]
MATRIX = [[5, 1, 0], [2, 3, 0], [0, 0, 0]]  # the third label: never seen, never predicted


def _pairs(matrix: list[list[int]]) -> tuple[list[int], list[int]]:
    truth, predicted = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            truth += [i] * count
            predicted += [j] * count
    return truth, predicted


def test_class_scores_match_scikit_learn() -> None:
    truth, predicted = _pairs(MATRIX)
    p, r, f, s = precision_recall_fscore_support(
        truth, predicted, labels=range(len(LABELS)), zero_division=0
    )
    scores = class_scores(LABELS, MATRIX)
    assert [c.label for c in scores] == LABELS
    np.testing.assert_allclose([c.precision for c in scores], p)
    np.testing.assert_allclose([c.recall for c in scores], r)
    np.testing.assert_allclose([c.f1 for c in scores], f)
    assert [c.support for c in scores] == list(s)


def test_table_has_a_row_per_label_with_its_counts_and_scores() -> None:
    lines = table(LABELS, MATRIX).splitlines()
    assert len(lines) == 1 + len(LABELS)
    assert "a-very-long-l…" in lines[0] and "precision" in lines[0]
    cooking = lines[1].split()
    assert cooking[:4] == ["cooking", "5", "1", "0"] and cooking[-1] == "6"
    assert cooking[-4:-1] == ["0.71", "0.83", "0.77"]  # 5/7, 5/6, their harmonic mean
    assert lines[3].startswith("a-very-long-label-name-indeed")  # rows show labels whole


@pytest.mark.parametrize("labels", [LABELS, ["négatif", "positif"]])
def test_plot_writes_a_png_that_grows_with_the_labels(tmp_path: Path, labels: list[str]) -> None:
    out = tmp_path / "matrix.png"
    matrix = MATRIX if len(labels) == 3 else [[4, 1], [2, 3]]
    plot(labels, matrix, "head v1", out)
    with Image.open(out) as image:
        assert image.format == "PNG"
        size = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert size[0] > 200 and size[1] > 100
    assert colours is not None and len(colours) > 2  # shaded cells, not a blank page
