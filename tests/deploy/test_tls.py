"""deploy/tls and deploy/mtls: TLS from Secrets mounted read-only, the settings pointing at them.

Each variant is rendered as `kubectl apply -k deploy/` applies it with the Components added
(tests/deploy/conftest.py `render`); where kubectl is installed, kustomize's own rendering must
be the same.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from service.config import Settings
from tests.deploy.conftest import (
    DEPLOY,
    KUSTOMIZATION,
    VARIANTS,
    Resource,
    documents,
    one,
    render,
    variant,
)
from tests.deploy.test_cross_references import (
    GATEWAYS,
    literal_env,
    pod_spec,
    setting_values,
)

#: The settings each variant must set, and the Secret type behind each.
TLS_SETTINGS = {
    "plaintext": {},
    "tls": {
        "TRANSFERD_TLS_CERT_FILE": "kubernetes.io/tls",
        "TRANSFERD_TLS_KEY_FILE": "kubernetes.io/tls",
    },
    "mtls": {
        "TRANSFERD_TLS_CERT_FILE": "kubernetes.io/tls",
        "TRANSFERD_TLS_KEY_FILE": "kubernetes.io/tls",
        "TRANSFERD_TLS_CLIENT_CA_FILE": "Opaque",
    },
}


def secret_keys(secret: Resource) -> set[str]:
    return {*secret.doc.get("data", {}), *secret.doc.get("stringData", {})}


def mounted_file(
    resources: list[Resource], deployment: Resource, path: str
) -> tuple[dict[str, Any], Resource, str]:
    """The mount holding `path`, the Secret behind it and the key whose file `path` is."""
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (mount,) = [
        m
        for m in container["volumeMounts"]
        if PurePosixPath(m["mountPath"]) in PurePosixPath(path).parents
    ]
    source = volumes[mount["name"]]["secret"]
    secret = one(resources, "Secret", source["secretName"])
    name = str(PurePosixPath(path).relative_to(mount["mountPath"]))
    items = {item["path"]: item["key"] for item in source.get("items", [])}
    return mount, secret, items.get(name, name) if items else name


@pytest.mark.parametrize("name", GATEWAYS)
@pytest.mark.parametrize("which", list(VARIANTS))
def test_each_tls_setting_is_a_file_of_a_secret_mounted_read_only(which: str, name: str) -> None:
    resources = variant(VARIANTS[which])
    deployment = one(resources, "Deployment", name)
    env = literal_env(deployment)
    tls = {k: v for k, v in env.items() if k.startswith("TRANSFERD_TLS_")}
    assert set(tls) == set(TLS_SETTINGS[which])
    for setting, path in tls.items():
        mount, secret, key = mounted_file(resources, deployment, path)
        assert mount.get("readOnly") is True, setting
        # A subPath mount is never updated when the Secret changes: no rotation without restart.
        assert "subPath" not in mount and "subPathExpr" not in mount, setting
        assert key in secret_keys(secret), f"{setting}: {secret.name} has no key {key}"
        assert secret.doc["type"] == TLS_SETTINGS[which][setting], setting
    # The service's own validation: both or neither of cert and key, a client CA only with them.
    settings = Settings(**setting_values(env))
    assert (settings.tls_cert_file is not None) == bool(tls)
    assert (settings.tls_client_ca_file is not None) == (which == "mtls")


def test_the_tls_components_change_only_the_gateways_tls() -> None:
    """Triton, the ConfigMap, the probes and everything else are the plaintext deploy's."""
    plain = {(r.kind, r.name): r.doc for r in render()}
    for components in (VARIANTS["tls"], VARIANTS["mtls"]):
        rendered = {(r.kind, r.name): r.doc for r in render(components)}
        assert rendered.keys() == plain.keys()
        for key, doc in rendered.items():
            if key in {("Deployment", name) for name in GATEWAYS}:
                (before,), (after,) = (
                    pod_spec(Resource("", d))["containers"] for d in (plain[key], doc)
                )
                for field in ("startupProbe", "readinessProbe", "livenessProbe", "ports"):
                    assert after[field] == before[field], (key, field)
                env = {e["name"] for e in after["env"]} - {e["name"] for e in before["env"]}
                assert env and all(n.startswith("TRANSFERD_TLS_") for n in env)
            elif key == ("Service", "transferd-gateway"):
                (grpc,) = [p for p in doc["spec"]["ports"] if p["name"] == "grpc"]
                assert "appProtocol" not in grpc  # TLS, no longer h2c
                (plain_grpc,) = [p for p in plain[key]["spec"]["ports"] if p["name"] == "grpc"]
                assert plain_grpc["appProtocol"] == "kubernetes.io/h2c"
                assert {**grpc, "appProtocol": "kubernetes.io/h2c"} == plain_grpc
            else:
                assert doc == plain[key], key


def test_the_tls_secrets_are_placeholders_that_stop_a_gateway_rather_than_serve() -> None:
    """Empty values: a gateway started with them stops, naming the setting, instead of serving
    without TLS; the real Secrets are created out of band (not applied by the kustomization)."""
    for component in ("tls", "mtls"):
        (secret,) = documents(DEPLOY / component / "secret.yaml")
        assert secret["stringData"] and not any(secret["stringData"].values()), component
        assert "data" not in secret


def test_every_component_folder_is_a_tested_variant() -> None:
    components = {p.parent.name for p in DEPLOY.glob(f"*/{KUSTOMIZATION}")}
    assert components == set(itertools.chain(*VARIANTS.values()))
    # And the kustomization says how to turn each on.
    comment = (DEPLOY / KUSTOMIZATION).read_text()
    for component in components:
        assert f"kustomize edit add component {component}" in comment


def without_image_tags(doc: Any) -> Any:
    """`doc` with `image: name:tag` as `image: name` (kustomize applies the `images` tags), and
    its lists in one order."""
    if isinstance(doc, dict):
        return {
            k: re.sub(r":[^:/]+$", "", v) if k == "image" else without_image_tags(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        # Order aside (kustomize appends merged items elsewhere): sorted by their JSON.
        return sorted(
            (without_image_tags(v) for v in doc), key=lambda v: json.dumps(v, sort_keys=True)
        )
    return doc


@pytest.mark.parametrize("which", list(VARIANTS))
def test_kustomize_renders_each_variant_as_the_tests_do(which: str, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the render of conftest.py is checked where it is")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    kustomization = yaml.safe_load((copy / KUSTOMIZATION).read_text())
    if VARIANTS[which]:
        kustomization["components"] = list(VARIANTS[which])
    (copy / KUSTOMIZATION).write_text(yaml.safe_dump(kustomization))
    result = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    theirs = {
        (d["kind"], d["metadata"]["name"]): without_image_tags(d)
        for d in yaml.safe_load_all(result.stdout)
    }
    ours = {(r.kind, r.name): without_image_tags(r.doc) for r in render(VARIANTS[which])}
    assert theirs == ours
