"""deploy/: names that refer to each other resolve, and the settings match the service's."""

from __future__ import annotations

import re
from typing import Any

import yaml

from service.api.readiness import LIVENESS_SERVICE
from service.config import RuntimeKind, Settings
from tests.conftest import ROOT
from tests.deploy.conftest import DEPLOY, KUSTOMIZATION, Resource, find, one

NAMESPACE = "transferd"


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


def test_hpa_and_pdb_point_at_the_gateway(resources: list[Resource]) -> None:
    gateway = one(resources, "Deployment", "transferd-gateway")
    for hpa in find(resources, "HorizontalPodAutoscaler"):
        ref = hpa.doc["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", gateway.name)
        # One writer of the SQLite store until a shared store exists (deploy/README.md).
        assert hpa.doc["spec"]["maxReplicas"] == 1
    (pdb,) = find(resources, "PodDisruptionBudget")
    assert selects(pdb.doc["spec"]["selector"]["matchLabels"], pod_labels(gateway))


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


def test_the_gateway_is_non_root_read_only_with_grpc_probes_and_the_admin_key(
    resources: list[Resource],
) -> None:
    gateway = one(resources, "Deployment", "transferd-gateway")
    spec = pod_spec(gateway)
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["grpc"] == {"port": 50051}
    assert container["livenessProbe"]["grpc"] == {"port": 50051, "service": LIVENESS_SERVICE}
    env = {e["name"]: e for e in container["env"]}
    assert env["TRANSFERD_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "transferd-admin"
    # Writable paths are volumes: the store, temporary files; the models are mounted read-only.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/models", "/data", "/tmp"} and mounts["/models"]["readOnly"]


def test_the_dockerfile_user_is_the_one_the_pods_run_as(resources: list[Resource]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    gateway_stage = dockerfile[dockerfile.index("AS gateway") :]
    (user,) = re.findall(r"^USER (\d+):(\d+)$", gateway_stage, re.MULTILINE)
    context = pod_spec(one(resources, "Deployment", "transferd-gateway"))["securityContext"]
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


def test_both_workloads_load_the_same_models_image(resources: list[Resource]) -> None:
    images = {
        deployment.name: {c["image"] for c in pod_spec(deployment)["initContainers"]}
        for deployment in find(resources, "Deployment")
    }
    assert images == {"transferd-gateway": {"transferd-models"}, "triton": {"transferd-models"}}
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    assert {"transferd", "transferd-models"} <= {i["name"] for i in kustomization["images"]}
