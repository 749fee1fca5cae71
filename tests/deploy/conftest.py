"""Fixtures for the offline checks of deploy/ and the Dockerfile: the manifests, parsed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUSTOMIZATION = "kustomization.yaml"


@dataclass(frozen=True)
class Resource:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        return self.doc["metadata"].get("namespace")


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest of deploy/ (the kustomization is kustomize's, not the API's)."""
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != KUSTOMIZATION)


@pytest.fixture(scope="session")
def resources() -> list[Resource]:
    found = [
        Resource(path.name, doc)
        for path in manifest_files()
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]
    assert found, "deploy/ holds no manifests"
    return found


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    return [r for r in resources if r.kind == kind and (name is None or r.name == name)]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = find(resources, kind, name)
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} definitions"
    return matches[0]
