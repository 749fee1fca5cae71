"""Fixtures for the offline checks of deploy/ and the Dockerfile: the manifests, parsed.

deploy/ is one kustomization and the Components that turn TLS (tls/) and mTLS (mtls/) on. The
`resources` fixture is each variant as `kubectl apply -k deploy/` applies it (plus the Secrets
created out of band), so every check runs on the plaintext, TLS and mTLS gateways alike.
`render` applies the Components' strategic-merge patches itself (the few rules these patches
use); test_manifests.py compares it with kustomize's own rendering where kubectl is installed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUSTOMIZATION = "kustomization.yaml"
#: Created out of band, never applied by the kustomization (deploy/README.md): one a folder.
SECRETS = "secret.yaml"
#: The variants deploy/ shows: the Components added to the kustomization, in order.
VARIANTS: dict[str, tuple[str, ...]] = {
    "plaintext": (),
    "tls": ("tls",),
    "mtls": ("tls", "mtls"),
}
#: Strategic-merge keys of the lists these patches touch (as the Kubernetes API defines them).
MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
}


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


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def list_keys(field: str, items: list[dict[str, Any]]) -> tuple[str, ...]:
    if field == "ports":  # a container's ports merge by containerPort, a Service's by both
        return ("containerPort",) if "containerPort" in items[0] else ("port", "protocol")
    assert field in MERGE_KEYS, f"a patch of list {field!r}: teach `merge` its merge key"
    return MERGE_KEYS[field]


def merge(base: Any, patch: Any, field: str = "") -> Any:
    """`patch` applied to `base` as a strategic-merge patch: maps merge, null removes a field,
    lists of objects merge item by item on their merge key."""
    if base is None:  # a new field or list item: the patch's, as it is
        return copy.deepcopy(patch)
    if isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = merge(merged.get(key), value, key)
        return merged
    if isinstance(patch, list) and patch and isinstance(patch[0], dict):
        keys = list_keys(field, patch)
        defaults = {"protocol": "TCP"}
        merged_items = list(base)
        for item in patch:
            ident = [item.get(k, defaults.get(k)) for k in keys]
            at = [
                i
                for i, old in enumerate(merged_items)
                if [old.get(k, defaults.get(k)) for k in keys] == ident
            ]
            if at:
                merged_items[at[0]] = merge(merged_items[at[0]], item, field)
            else:
                merged_items.append(copy.deepcopy(item))
        return merged_items
    return copy.deepcopy(patch)


def targeted(target: dict[str, Any] | None, patch: dict[str, Any], doc: dict[str, Any]) -> bool:
    """Whether a patch (with the kustomization's `target`, if any) applies to `doc`."""
    if target is None:
        return (doc["kind"], doc["metadata"]["name"]) == (
            patch["kind"],
            patch["metadata"]["name"],
        )
    labels = doc["metadata"].get("labels", {})
    selector = dict(
        term.split("=", 1) for term in target.get("labelSelector", "").split(",") if term
    )
    return (
        doc["kind"] == target.get("kind", doc["kind"])
        and doc["metadata"]["name"] == target.get("name", doc["metadata"]["name"])
        and all(labels.get(k) == v for k, v in selector.items())
    )


def render(components: Sequence[str] = ()) -> list[Resource]:
    """What `kubectl apply -k deploy/` applies with `components` added to the kustomization."""
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    rendered = [
        Resource(name, doc)
        for name in kustomization["resources"]
        for doc in documents(DEPLOY / name)
    ]
    for component in components:
        folder = DEPLOY / component
        spec = yaml.safe_load((folder / KUSTOMIZATION).read_text())
        assert spec["kind"] == "Component", folder
        assert set(spec) <= {"apiVersion", "kind", "patches"}, f"{folder}: teach `render` more"
        for entry in spec["patches"]:
            (patch,) = documents(folder / entry["path"])
            target = entry.get("target")
            if target is not None:  # the patch's own name is replaced by each target's
                patch = {**patch, "metadata": {}}
            hits = 0
            for i, resource in enumerate(rendered):
                if targeted(target, patch, resource.doc):
                    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
                    rendered[i] = Resource(resource.file, merge(resource.doc, body))
                    hits += 1
            assert hits, f"{folder / entry['path']} patches nothing"
    return rendered


def variant(components: Sequence[str]) -> list[Resource]:
    """A variant's resources, and the Secrets created out of band for it (their shape)."""
    secrets = [
        Resource(str(path.relative_to(DEPLOY)), doc)
        for folder in (DEPLOY, *(DEPLOY / c for c in components))
        if (path := folder / SECRETS).exists()
        for doc in documents(path)
    ]
    return render(components) + secrets


@pytest.fixture(scope="session", params=list(VARIANTS))
def resources(request: pytest.FixtureRequest) -> list[Resource]:
    """deploy/ as applied: plaintext, with TLS, with mTLS."""
    found = variant(VARIANTS[request.param])
    assert found, "deploy/ holds no manifests"
    return found


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    return [r for r in resources if r.kind == kind and (name is None or r.name == name)]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = find(resources, kind, name)
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} definitions"
    return matches[0]
