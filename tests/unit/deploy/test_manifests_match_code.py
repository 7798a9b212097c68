"""The deployment names every service and topic of the code, and nothing else.

The services and topics live in `elmo.contracts` (topics, chain); the manifests generated from
them must be the committed ones, and every other place that names a service (skaffold.yaml, the
Dockerfiles, the rendered overlays) must name exactly the same set.
"""

from __future__ import annotations

import re

import yaml

from elmo.contracts.chain import CHAIN
from elmo.contracts.topics import EDGE_SERVICES, SERVICES, all_topics
from elmo.tools import k8s_manifests
from tests.unit.deploy.conftest import DEPLOY, OVERLAYS, REPO, of_kind

ALL_SERVICES = set(SERVICES) | set(EDGE_SERVICES)
SERVICE_COMPONENTS = {"consumer", "edge"}


def test_committed_generated_manifests_are_what_the_generator_writes():
    stale = k8s_manifests.stale(DEPLOY)
    assert not stale, f"run `elmo deploy render`: stale or missing {[str(p.relative_to(REPO)) for p in stale]}"


def test_every_consumer_has_a_hop_in_the_chain():
    assert {hop.service for hop in CHAIN} == set(SERVICES)


def test_the_workload_table_names_only_real_services():
    assert set(k8s_manifests.WORKLOADS) <= ALL_SERVICES


def test_every_overlay_deploys_exactly_the_services_of_the_code(builds):
    for overlay in OVERLAYS:
        deployments = of_kind(builds[overlay], "Deployment")
        services = {
            name for name, d in deployments.items() if d["spec"]["template"]["metadata"]["labels"].get(k8s_manifests.COMPONENT_LABEL) in SERVICE_COMPONENTS
        }
        assert services == ALL_SERVICES, overlay
        # Nothing else runs as a Deployment: Redis is a StatefulSet, Kafka is Strimzi's.
        assert set(deployments) == ALL_SERVICES, overlay
        assert ALL_SERVICES <= set(of_kind(builds[overlay], "Service")), overlay
        assert ALL_SERVICES <= set(of_kind(builds[overlay], "PodDisruptionBudget")), overlay
        for name, d in deployments.items():
            component = d["spec"]["template"]["metadata"]["labels"][k8s_manifests.COMPONENT_LABEL]
            assert component == ("consumer" if name in SERVICES else "edge"), name


def test_every_overlay_creates_exactly_the_topics_of_the_registry(builds):
    expected = {t.name: t for t in all_topics()}
    for overlay in OVERLAYS:
        topics = of_kind(builds[overlay], "KafkaTopic")
        assert set(topics) == set(expected), overlay
        for name, resource in topics.items():
            assert resource["spec"]["partitions"] == expected[name].partitions, name
            assert resource["spec"]["config"] == expected[name].config, name
            assert resource["metadata"]["labels"]["strimzi.io/cluster"] == k8s_manifests.KAFKA_CLUSTER


def test_prod_scales_every_consumer_on_the_lag_of_its_input_topic(builds):
    scaled = of_kind(builds["overlays/prod"], "ScaledObject")
    assert set(scaled) == set(SERVICES)
    for hop in CHAIN:
        spec = scaled[hop.service]["spec"]
        assert spec["scaleTargetRef"]["name"] == hop.service
        assert spec["maxReplicaCount"] == hop.consumes.partitions
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["topic"] == hop.consumes.name
        assert trigger["metadata"]["consumerGroup"] == f"elmo-{hop.service}"
        assert trigger["metadata"]["bootstrapServers"].startswith(f"{k8s_manifests.KAFKA_BOOTSTRAP_SERVICE}.")
    # dev runs without KEDA; base does not need it either.
    assert not of_kind(builds["overlays/dev"], "ScaledObject")
    assert not of_kind(builds["base"], "ScaledObject")


def _skaffold() -> dict:
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


def test_skaffold_builds_one_image_per_service_from_its_dockerfile():
    artifacts = {a["image"]: a for a in _skaffold()["build"]["artifacts"]}
    assert set(artifacts) == {"elmo-base"} | {k8s_manifests.image(s) for s in ALL_SERVICES}
    for service in ALL_SERVICES:
        artifact = artifacts[k8s_manifests.image(service)]
        module_dir = k8s_manifests.service_module(service).replace(".", "/")
        assert artifact["docker"]["dockerfile"] == f"{module_dir}/Dockerfile", service
        assert artifact.get("context", ".") == "."
        assert artifact["requires"] == [{"image": "elmo-base", "alias": "BASE_IMAGE"}], service


def test_every_service_and_only_a_service_has_a_dockerfile_that_runs_its_module():
    dockerfiles = sorted((REPO / "services").glob("*/Dockerfile"))
    expected = {k8s_manifests.service_module(s).split(".")[1]: s for s in ALL_SERVICES}
    assert {d.parent.name for d in dockerfiles} == set(expected)
    for dockerfile in dockerfiles:
        module = k8s_manifests.service_module(expected[dockerfile.parent.name])
        commands = re.findall(r"^CMD (.+)$", dockerfile.read_text(), flags=re.MULTILINE)
        assert commands == [f'["python", "-m", "{module}"]'], dockerfile


def test_the_images_the_manifests_run_are_the_ones_skaffold_builds(builds):
    built = {a["image"] for a in _skaffold()["build"]["artifacts"]}
    for overlay in OVERLAYS:
        for deployment in of_kind(builds[overlay], "Deployment").values():
            pod = deployment["spec"]["template"]["spec"]
            for container in pod["containers"] + pod.get("initContainers", []):
                assert container["image"] in built, (overlay, container["name"])
