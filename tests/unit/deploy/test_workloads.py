"""What every service pod must have, in every overlay: the Kubernetes conventions for Kafka consumers."""

from __future__ import annotations

import re

import pytest

from elmo.contracts.topics import EDGE_SERVICES, SERVICES
from elmo.runtime.settings import RuntimeSettings
from elmo.tools import k8s_manifests
from tests.unit.deploy.conftest import OVERLAYS, of_kind

QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?$")
SCALE = {None: 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text: str | int) -> float:
    number, unit = QUANTITY.match(str(text)).groups()
    return float(number) * SCALE[unit]


def _config(resources: list[dict]) -> tuple[str, dict[str, str]]:
    (name,) = [n for n in of_kind(resources, "ConfigMap") if n.startswith(k8s_manifests.CONFIG_MAP + "-")]
    return name, of_kind(resources, "ConfigMap")[name]["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pods_follow_the_conventions(builds, overlay):
    resources = builds[overlay]
    config_name, config = _config(resources)
    claims = set(of_kind(resources, "PersistentVolumeClaim"))
    grace_s = float(config.get("ELMO_SHUTDOWN_GRACE_S", RuntimeSettings.model_fields["shutdown_grace_s"].default))
    for name, deployment in of_kind(resources, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        # The runtime drains within ELMO_SHUTDOWN_GRACE_S; Kubernetes must not kill it before.
        assert pod["terminationGracePeriodSeconds"] >= grace_s + 10, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"], name
        assert volumes["model-store"]["persistentVolumeClaim"]["claimName"] in claims, name
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, (name, volume)
        (container,) = pod["containers"]
        assert {p["containerPort"] for p in container["ports"]} == {k8s_manifests.HTTP_PORT}, name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"], name
        # Only dev makes the root file system writable (for `skaffold dev` file sync).
        assert security["readOnlyRootFilesystem"] is (overlay != "overlays/dev"), name
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "/tmp" in mounts and not mounts[k8s_manifests.MODEL_STORE_PATH].get("readOnly"), name
        for box in pod["containers"] + pod.get("initContainers", []):
            requests, limits = box["resources"]["requests"], box["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert quantity(requests[resource]) <= quantity(limits[resource]), (name, box["name"], resource)
        env_from = container["envFrom"]
        assert {"configMapRef": {"name": config_name}} in env_from, name
        secret_refs = [e["secretRef"] for e in env_from if "secretRef" in e]
        assert all(ref == {"name": k8s_manifests.SECRET, "optional": True} for ref in secret_refs), name
    assert config["ELMO_MODEL_STORE"] == k8s_manifests.MODEL_STORE_PATH
    assert config["ELMO_HTTP_PORT"] == str(k8s_manifests.HTTP_PORT)
    assert config["ELMO_HTTP_HOST"] == "0.0.0.0"
    assert config["ELMO_KAFKA_BOOTSTRAP_SERVERS"] == f"{k8s_manifests.KAFKA_BOOTSTRAP_SERVICE}:9092"
    assert config["ELMO_REDIS_URL"].startswith("redis://redis:6379/")


def test_memory_is_sized_per_service(builds):
    deployments = of_kind(builds["base"], "Deployment")

    def memory_limit(service: str) -> float:
        return quantity(deployments[service]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])

    def memory_request(service: str) -> float:
        return quantity(deployments[service]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"])

    assert memory_request("asr") >= 1 * 2**30
    assert memory_request("nlu") >= 1.1 * 2**30 and memory_request("sentiment") >= 1.1 * 2**30
    for service in ("delivery", "ingest"):
        assert memory_limit(service) < memory_request("asr"), service


def test_the_model_heads_are_trained_into_the_store_before_their_services_start(builds):
    deployments = of_kind(builds["base"], "Deployment")
    for service, command in (("nlu", "elmo train nlu --if-missing"), ("sentiment", "elmo train sentiment --if-missing")):
        (init,) = deployments[service]["spec"]["template"]["spec"]["initContainers"]
        assert " ".join(init["command"]) == command
        assert init["image"] == k8s_manifests.image(service)
        assert {m["mountPath"] for m in init["volumeMounts"]} >= {k8s_manifests.MODEL_STORE_PATH, "/tmp"}


def test_the_model_store_is_shared_read_write_many_outside_dev(builds):
    for overlay in ("base", "overlays/prod"):
        claim = of_kind(builds[overlay], "PersistentVolumeClaim")[k8s_manifests.MODEL_STORE_CLAIM]
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], overlay


def test_replicas_are_left_to_keda_in_prod_and_edges_run_twice(builds):
    deployments = of_kind(builds["overlays/prod"], "Deployment")
    for service in SERVICES:
        assert "replicas" not in deployments[service]["spec"], service
    for service in EDGE_SERVICES:
        assert deployments[service]["spec"]["replicas"] == 2, service
    for service in SERVICES + EDGE_SERVICES:
        assert "replicas" not in of_kind(builds["overlays/dev"], "Deployment")[service]["spec"], service


def test_dev_runs_one_kafka_node_with_matching_replication(builds):
    dev, prod = builds["overlays/dev"], builds["overlays/prod"]
    assert of_kind(dev, "KafkaNodePool")["dual-role"]["spec"]["replicas"] == 1
    assert of_kind(dev, "Kafka")["elmo"]["spec"]["kafka"]["config"]["default.replication.factor"] == 1
    nodes = of_kind(prod, "KafkaNodePool")["dual-role"]["spec"]["replicas"]
    config = of_kind(prod, "Kafka")["elmo"]["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] < config["default.replication.factor"] <= nodes


def test_network_policies_deny_by_default_and_open_what_the_services_need(builds):
    policies = of_kind(builds["base"], "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    egress_ports = {p["port"] for rule in policies["elmo-services-egress"]["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {9092, 6379, 53}
    # Services that call the platforms carry the label the platform egress policy selects.
    selector = policies["platform-apis-egress"]["spec"]["podSelector"]["matchLabels"]
    labelled = {
        name
        for name, d in of_kind(builds["base"], "Deployment").items()
        if d["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
    }
    assert labelled == {s for s in SERVICES + EDGE_SERVICES if k8s_manifests.workload(s).reaches_platforms}
    assert labelled >= set(EDGE_SERVICES)


def _known_settings() -> set[str]:
    """ELMO_ variables some settings class of the code reads (the runtime's, the links', each service's)."""
    import importlib
    import pkgutil

    from pydantic_settings import BaseSettings

    import services
    from elmo.link_settings import LinkSettings

    classes: set[type[BaseSettings]] = {RuntimeSettings, LinkSettings}
    for module_info in pkgutil.iter_modules(services.__path__):
        try:
            module = importlib.import_module(f"services.{module_info.name}.settings")
        except ModuleNotFoundError:
            continue
        classes |= {v for v in vars(module).values() if isinstance(v, type) and issubclass(v, BaseSettings)}
    return {f"ELMO_{name}".upper() for cls in classes for name in cls.model_fields}


def test_every_elmo_variable_the_manifests_set_is_a_setting_of_the_code(builds):
    known = _known_settings()
    for overlay in OVERLAYS:
        _, config = _config(builds[overlay])
        set_here = set(config)
        for deployment in of_kind(builds[overlay], "Deployment").values():
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                set_here |= {e["name"] for e in container.get("env", [])}
        unknown = {name for name in set_here if name.startswith("ELMO_")} - known
        assert not unknown, (overlay, unknown)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_resource_lands_in_the_elmo_namespace(builds, overlay):
    # Resources of kustomize components do not inherit the base's namespace; a ScaledObject outside
    # `elmo` would never find its Deployment.
    stray = [f"{r['kind']}/{r['metadata']['name']}" for r in builds[overlay]
             if r["kind"] not in CLUSTER_SCOPED and r["metadata"].get("namespace") != "elmo"]  # fmt: skip
    assert stray == []
