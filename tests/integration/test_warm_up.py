"""Warm-up: every backbone runs its warm-up calls on the model before health says SERVING."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import start_server


def _samples(metrics_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_each_backbone_is_warmed_up_on_its_model_before_serving(
    tmp_path: Path, model_repo: Path
) -> None:
    backbones = sorted(
        folder.name for folder in model_repo.iterdir() if (folder / "backbone.json").exists()
    )
    with start_server(tmp_path, model_repo) as server:
        samples = _samples(server.metrics_port)  # SERVING, and no request sent yet
    for backbone in backbones:
        warm_up = samples.get(("transferd_warm_up_calls_total", (("backbone", backbone),)), 0)
        assert warm_up >= 1, f"{backbone} reported SERVING without warming up"
        # The calls ran through the model itself: the inference histogram counted each of them.
        inferences = samples[
            (
                "transferd_inference_duration_seconds_count",
                (("backbone", backbone), ("runtime", "embedded")),
            )
        ]
        assert inferences == warm_up
    methods = {
        dict(labels)["method"] for name, labels in samples if name == "transferd_requests_total"
    }
    assert methods == {"Health/Check"}, "only health was asked before this scrape"
    log = (tmp_path / "server.log").read_text()
    assert log.index("warmed up") < log.index("SERVING backbones")
