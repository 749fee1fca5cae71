"""deploy/: names that refer to each other resolve, and the settings match the service's."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from service.config import RuntimeKind, Settings
from service.metrics_port import LIVE_PATH, LIVENESS_TIMEOUT_S, READY_PATH
from tests.conftest import ROOT
from tests.deploy.conftest import DEPLOY, KUSTOMIZATION, Resource, find, one

NAMESPACE = "transferd"
API, TRAINING = "transferd-gateway", "transferd-gateway-training"
GATEWAYS = (API, TRAINING)
DATABASE_SECRET = "transferd-database"


def pod_spec(deployment: Resource) -> dict[str, Any]:
    return deployment.doc["spec"]["template"]["spec"]


def containers(deployment: Resource) -> list[dict[str, Any]]:
    spec = pod_spec(deployment)
    return [*spec.get("initContainers", []), *spec["containers"]]


def pod_labels(deployment: Resource) -> dict[str, str]:
    return deployment.doc["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container_ports(deployment: Resource) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for container in pod_spec(deployment)["containers"]
        for port in container.get("ports", [])
    }


def test_every_namespaced_resource_is_in_the_defined_namespace(resources: list[Resource]) -> None:
    one(resources, "Namespace", NAMESPACE)
    for resource in resources:
        if resource.kind != "Namespace":
            assert resource.namespace == NAMESPACE, f"{resource.kind}/{resource.name}"
    assert yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())["namespace"] == NAMESPACE


def test_deployments_select_their_own_pods(resources: list[Resource]) -> None:
    for deployment in find(resources, "Deployment"):
        selector = deployment.doc["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(deployment)), deployment.name
        others = [d for d in find(resources, "Deployment") if d is not deployment]
        assert not any(selects(selector, pod_labels(o)) for o in others), deployment.name


def test_services_select_one_deployment_and_target_its_named_ports(
    resources: list[Resource],
) -> None:
    for service in find(resources, "Service"):
        selector = service.doc["spec"]["selector"]
        (target,) = [d for d in find(resources, "Deployment") if selects(selector, pod_labels(d))]
        ports = container_ports(target)
        for port in service.doc["spec"]["ports"]:
            target_port = port["targetPort"]
            if isinstance(target_port, str):
                assert target_port in ports, f"{service.name}: no container port {target_port}"
            else:
                assert target_port in ports.values(), f"{service.name}: {target_port}"


def test_probes_use_declared_ports(resources: list[Resource]) -> None:
    for deployment in find(resources, "Deployment"):
        ports = container_ports(deployment)
        for container in pod_spec(deployment)["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                spec = container[probe]  # every container has all three
                action = spec.get("grpc") or spec.get("httpGet") or spec.get("tcpSocket")
                port = action["port"]
                assert port in ports or port in ports.values(), f"{deployment.name} {probe} {port}"


def literal_env(deployment: Resource) -> dict[str, str]:
    """The literal `env` values of the deployment's one container (not those from Secrets)."""
    (container,) = pod_spec(deployment)["containers"]
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def setting_values(variables: dict[str, str]) -> dict[str, str]:
    """TRANSFERD_* environment variables as Settings' keyword arguments."""
    return {k.removeprefix("TRANSFERD_").lower(): v for k, v in variables.items()}


def test_the_api_replicas_scale_out_under_an_hpa_and_a_pdb_allowing_one_down(
    resources: list[Resource],
) -> None:
    api = one(resources, "Deployment", API)
    (hpa,) = find(resources, "HorizontalPodAutoscaler")
    ref = hpa.doc["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", api.name)
    # Several replicas on the shared PostgreSQL store: never fewer than two, room to grow.
    assert hpa.doc["spec"]["minReplicas"] >= 2
    assert hpa.doc["spec"]["maxReplicas"] > hpa.doc["spec"]["minReplicas"]
    assert api.doc["spec"]["replicas"] == hpa.doc["spec"]["minReplicas"]


def test_each_gateway_deployment_has_a_pdb_allowing_one_down(resources: list[Resource]) -> None:
    pdbs = find(resources, "PodDisruptionBudget")
    for name in GATEWAYS:
        deployment = one(resources, "Deployment", name)
        (pdb,) = [
            p
            for p in pdbs
            if selects(p.doc["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        ]
        assert pdb.doc["spec"]["maxUnavailable"] == 1, pdb.name
        assert "minAvailable" not in pdb.doc["spec"], pdb.name


def test_gateways_roll_with_several_replicas_and_never_lose_one(resources: list[Resource]) -> None:
    for name in GATEWAYS:
        spec = one(resources, "Deployment", name).doc["spec"]
        assert spec["replicas"] > 1, name
        # A new pod is ready before an old one goes: RollingUpdate, maxUnavailable 0, surge 1.
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }, name


def test_every_gateway_reads_the_database_url_from_a_secret(resources: list[Resource]) -> None:
    configmap = one(resources, "ConfigMap", "transferd-config").doc["data"]
    assert "TRANSFERD_DATABASE_URL" not in configmap  # it holds a password
    for name in GATEWAYS:
        (container,) = pod_spec(one(resources, "Deployment", name))["containers"]
        env = {e["name"]: e for e in container["env"]}
        ref = env["TRANSFERD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == DATABASE_SECRET and not ref.get("optional", False), name
    # The Secret's shape is a PostgreSQL URL: an empty one would mean a SQLite file per pod.
    secret = one(resources, "Secret", DATABASE_SECRET).doc["stringData"]["url"]
    assert Settings(database_url=secret).database_url is not None
    assert secret.startswith("postgresql+psycopg://")


def test_api_and_training_replicas_run_one_image_and_only_the_api_is_behind_the_service(
    resources: list[Resource],
) -> None:
    api, training = (one(resources, "Deployment", name) for name in GATEWAYS)
    assert literal_env(api)["TRANSFERD_TRAINING_WORKERS"] == "0"
    assert int(literal_env(training)["TRANSFERD_TRAINING_WORKERS"]) > 0
    images = [{c["image"] for c in containers(d)} for d in (api, training)]
    assert images[0] == images[1]
    assert [c["args"] for c in pod_spec(api)["containers"]] == [
        c["args"] for c in pod_spec(training)["containers"]
    ]
    # Clients reach the API replicas only: fitting would slow their calls (deploy/README.md).
    service = one(resources, "Service", API).doc["spec"]["selector"]
    assert selects(service, pod_labels(api)) and not selects(service, pod_labels(training))


def test_the_gateways_keep_no_state_on_a_volume(resources: list[Resource]) -> None:
    """Everything is in PostgreSQL: no PersistentVolumeClaim, /data is a per-pod cache."""
    assert not find(resources, "PersistentVolumeClaim")
    for name in GATEWAYS:
        volumes = {v["name"]: v for v in pod_spec(one(resources, "Deployment", name))["volumes"]}
        assert "emptyDir" in volumes["data"], name


def test_the_gateway_settings_are_real_and_valid(resources: list[Resource]) -> None:
    """Every TRANSFERD_* a gateway sets, from the ConfigMap or its own env, is a setting the
    service knows, and together they pass the service's own validation."""
    configmap = one(resources, "ConfigMap", "transferd-config").doc["data"]
    for name in GATEWAYS:
        (container,) = pod_spec(one(resources, "Deployment", name))["containers"]
        for env in container["env"]:
            field = env["name"].removeprefix("TRANSFERD_").lower()
            assert env["name"].startswith("TRANSFERD_") and field in Settings.model_fields
        values = {**configmap, **literal_env(one(resources, "Deployment", name))}
        Settings(**{k.removeprefix("TRANSFERD_").lower(): v for k, v in values.items()})


def test_referenced_configmaps_secrets_and_volumes_are_defined(resources: list[Resource]) -> None:
    for deployment in find(resources, "Deployment"):
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                one(
                    resources, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
                )
        for container in containers(deployment):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{deployment.name}: volume {mount['name']}"
            for source in container.get("envFrom", []):
                one(resources, "ConfigMap", source["configMapRef"]["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = one(resources, "Secret", ref["name"])
                    keys = {**secret.doc.get("data", {}), **secret.doc.get("stringData", {})}
                    assert ref["key"] in keys, f"{ref['name']} has no key {ref['key']}"


def test_the_configmap_holds_only_real_settings_and_points_at_triton(
    resources: list[Resource],
) -> None:
    data = one(resources, "ConfigMap", "transferd-config").doc["data"]
    for variable in data:
        assert variable.startswith("TRANSFERD_"), variable
        assert variable.removeprefix("TRANSFERD_").lower() in Settings.model_fields, variable
    settings = Settings(**{k.removeprefix("TRANSFERD_").lower(): v for k, v in data.items()})
    assert settings.runtime is RuntimeKind.TRITON
    # host:port names the Triton Service (possibly fully qualified) and its gRPC port.
    host, _, port = settings.triton_url.rpartition(":")
    service = one(resources, "Service", host.split(".")[0])
    assert host in (service.name, f"{service.name}.{NAMESPACE}.svc.cluster.local")
    assert {"name": "grpc", "port": int(port)}.items() <= next(
        p for p in service.doc["spec"]["ports"] if p["port"] == int(port)
    ).items()


@pytest.mark.parametrize("name", GATEWAYS)
def test_the_gateway_is_non_root_read_only_with_http_probes_and_the_admin_key(
    resources: list[Resource], name: str
) -> None:
    gateway = one(resources, "Deployment", name)
    spec = pod_spec(gateway)
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRANSFERD_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "transferd-admin"
    # Writable paths are volumes: the head cache, temporary files; the models (and, with TLS,
    # the certificates) are read-only.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/models", "/data", "/tmp"} <= set(mounts) and mounts["/models"]["readOnly"]
    assert {path for path, m in mounts.items() if not m.get("readOnly")} == {"/data", "/tmp"}


@pytest.mark.parametrize("name", GATEWAYS)
def test_the_probes_ask_the_metrics_port_which_serves_health_whatever_grpc_speaks(
    resources: list[Resource], name: str
) -> None:
    """Kubelet's gRPC probes speak no TLS: every variant probes the plain-HTTP health of the
    metrics port (service.metrics_port), on the port the gateway's settings serve it on."""
    deployment = one(resources, "Deployment", name)
    (container,) = pod_spec(deployment)["containers"]
    on_metrics = {"port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": READY_PATH, **on_metrics}
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, **on_metrics}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, **on_metrics}
    # /livez answers 503 once the event loop is LIVENESS_TIMEOUT_S late: within the probe's
    # timeout (default 1 s), else a slow loop would read as a timeout, not as the answer.
    assert container["livenessProbe"].get("timeoutSeconds", 1) > LIVENESS_TIMEOUT_S
    configmap = one(resources, "ConfigMap", "transferd-config").doc["data"]
    settings = Settings(**setting_values({**configmap, **literal_env(deployment)}))
    assert container_ports(deployment)["metrics"] == settings.metrics_port != 0


@pytest.mark.parametrize("name", GATEWAYS)
def test_the_dockerfile_user_is_the_one_the_pods_run_as(
    resources: list[Resource], name: str
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    gateway_stage = dockerfile[dockerfile.index("AS gateway") :]
    (user,) = re.findall(r"^USER (\d+):(\d+)$", gateway_stage, re.MULTILINE)
    context = pod_spec(one(resources, "Deployment", name))["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user


def test_triton_runs_on_a_gpu_with_its_three_ports_and_readiness(resources: list[Resource]) -> None:
    triton = one(resources, "Deployment", "triton")
    (container,) = pod_spec(triton)["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container_ports(triton) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert "--model-repository=" + mounts["model-repo"] in container["args"]


def test_prometheus_scrapes_each_pod_on_its_metrics_port(resources: list[Resource]) -> None:
    for deployment in find(resources, "Deployment"):
        annotations = deployment.doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == container_ports(deployment)["metrics"]


def test_every_workload_loads_the_same_models_image(resources: list[Resource]) -> None:
    images = {
        deployment.name: {c["image"] for c in pod_spec(deployment)["initContainers"]}
        for deployment in find(resources, "Deployment")
    }
    assert images == {name: {"transferd-models"} for name in (*GATEWAYS, "triton")}
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    assert {"transferd", "transferd-models"} <= {i["name"] for i in kustomization["images"]}
