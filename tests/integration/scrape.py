"""Prometheus scrapes of a server (or of Triton), read with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devtools.launcher import ServerProcess


def scrape(url: str) -> list[Sample]:
    """Every sample the metrics endpoint at `url` exposes now."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def server_metrics(server: ServerProcess) -> list[Sample]:
    """Every sample of the server's metrics port now."""
    return scrape(f"http://127.0.0.1:{server.metrics_port}/metrics")


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` (e.g. `transferd_requests_total`) whose labels include
    `labels`: one series when the labels name it; 0 when none exists yet."""
    wanted = labels.items()
    return sum(s.value for s in samples if s.name == name and wanted <= s.labels.items())


def series(samples: list[Sample], name: str) -> list[dict[str, str]]:
    """The label sets of the samples called `name`."""
    return [s.labels for s in samples if s.name == name]
