"""Every rendered resource is valid against its schema, offline.

Built-in kinds against the Kubernetes OpenAPI schemas that kubernetes-validate ships (strict: an
unknown field is an error, as with `kubectl apply --validate=strict`), for the oldest and the
newest Kubernetes version we support. Custom resources (Strimzi, KEDA, the Prometheus operator)
against the schemas in deploy/schemas (see its README for where each comes from), made strict the
same way. skaffold.yaml against Skaffold's published JSON schema, with each profile applied.
"""

from __future__ import annotations

import copy
import json
from functools import cache

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.conftest import OVERLAYS, REPO, SCHEMAS, of_kind

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM_RESOURCE_SCHEMAS = {
    ("kafka.strimzi.io/v1", "Kafka"): "crds/kafka.strimzi.io_v1_kafka.yaml",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): "crds/kafka.strimzi.io_v1_kafkanodepool.yaml",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "crds/kafka.strimzi.io_v1_kafkatopic.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "crds/keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "crds/monitoring.coreos.com_v1_podmonitor.json",
}
KEDA_KAFKA_TRIGGER = "crds/keda.sh_kafka_trigger_metadata.yaml"
# Applied in no overlay by default, so rendered here on their own.
COMPONENT_RESOURCES = ("deploy/k8s/components/prometheus-operator/pod-monitor.yaml",)


def _strict(schema: object) -> object:
    """A structural schema whose objects reject fields they do not list (strict field validation)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and schema.get("type", "object") == "object"
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _validator(relative: str) -> jsonschema.Validator:
    path = SCHEMAS / relative
    schema = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    if path.suffix == ".json":  # an upstream CRD schema; the hand-written ones are strict already
        schema = _strict(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def _errors(relative: str, instance: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(relative).iter_errors(instance)]


def _rendered_resources(builds: dict[str, list[dict]]) -> list[dict]:
    unique: dict[str, dict] = {}
    for overlay in OVERLAYS:
        for resource in builds[overlay]:
            unique.setdefault(json.dumps(resource, sort_keys=True), resource)
    for relative in COMPONENT_RESOURCES:
        for resource in yaml.safe_load_all((REPO / relative).read_text()):
            unique.setdefault(json.dumps(resource, sort_keys=True), resource)
    return list(unique.values())


def test_built_in_kinds_are_valid_for_every_supported_kubernetes_version(builds):
    failures = []
    checked = 0
    for resource in _rendered_resources(builds):
        if (resource["apiVersion"], resource["kind"]) in CUSTOM_RESOURCE_SCHEMAS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as error:
                failures.append(f"{resource['kind']}/{resource['metadata']['name']} on {version}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                failures.append(f"{resource['apiVersion']} {resource['kind']}: no schema (neither Kubernetes' nor deploy/schemas')")
    assert not failures, "\n".join(failures)
    assert checked > 40


def test_custom_resources_are_valid_against_their_crd_schemas(builds):
    failures = []
    seen = set()
    for resource in _rendered_resources(builds):
        key = (resource["apiVersion"], resource["kind"])
        if key not in CUSTOM_RESOURCE_SCHEMAS:
            continue
        seen.add(key)
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        failures += [f"{name}: {e}" for e in _errors(CUSTOM_RESOURCE_SCHEMAS[key], resource)]
        for trigger in resource.get("spec", {}).get("triggers", []):
            if trigger["type"] == "kafka":
                failures += [f"{name} kafka trigger: {e}" for e in _errors(KEDA_KAFKA_TRIGGER, trigger["metadata"])]
    assert not failures, "\n".join(failures)
    assert seen == set(CUSTOM_RESOURCE_SCHEMAS)


@pytest.mark.parametrize(
    ("key", "mutate"),
    [
        (("keda.sh/v1alpha1", "ScaledObject"), lambda r: r["spec"].__setitem__("maxReplicas", 3)),
        (("kafka.strimzi.io/v1", "Kafka"), lambda r: r["spec"]["kafka"]["listeners"][0].__setitem__("port", 9404)),
        (("kafka.strimzi.io/v1", "KafkaNodePool"), lambda r: r["spec"].__setitem__("roles", ["zookeeper"])),
        (("kafka.strimzi.io/v1", "KafkaTopic"), lambda r: r["spec"].__setitem__("partition", 6)),
    ],
    ids=["ScaledObject-unknown-field", "Kafka-reserved-port", "KafkaNodePool-role", "KafkaTopic-typo"],
)
def test_the_crd_schemas_catch_a_mistake(builds, key, mutate):
    resource = copy.deepcopy(next(r for r in builds["overlays/prod"] if (r["apiVersion"], r["kind"]) == key))
    mutate(resource)
    assert _errors(CUSTOM_RESOURCE_SCHEMAS[key], resource)


def test_a_misspelt_kafka_trigger_key_is_caught(builds):
    scaled = next(iter(of_kind(builds["overlays/prod"], "ScaledObject").values()))
    metadata = dict(scaled["spec"]["triggers"][0]["metadata"], lagTreshold="10")
    assert _errors(KEDA_KAFKA_TRIGGER, metadata)


def _apply_profile(config: dict, profile: dict) -> dict:
    """Skaffold's profile semantics for what skaffold.yaml uses: JSON-patch `replace`/`add`, then overrides."""
    config = copy.deepcopy(config)
    for patch in profile.get("patches", []):
        *parents, last = [int(p) if p.isdigit() else p for p in patch["path"].strip("/").split("/")]
        target = config
        for part in parents:
            target = target[part]
        assert patch["op"] in ("replace", "add"), patch
        if patch["op"] == "replace":
            assert last in target if isinstance(target, dict) else last < len(target), patch["path"]
        target[last] = patch["value"]
    for section in ("build", "manifests", "deploy"):
        if section in profile:
            config[section] = profile[section]
    return config


def test_skaffold_config_is_valid_against_skaffolds_schema_with_each_profile():
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    schema = json.loads((SCHEMAS / "skaffold" / "v4beta13.json").read_text())
    assert config["apiVersion"] == "skaffold/v4beta13"
    validator = jsonschema.Draft7Validator(schema)
    variants = {"default": config} | {p["name"]: _apply_profile(config, p) for p in config["profiles"]}
    for name, variant in variants.items():
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(variant)]
        assert not errors, (name, errors)
        for path in variant["manifests"]["kustomize"]["paths"]:
            assert (REPO / path / "kustomization.yaml").is_file(), (name, path)
    assert variants["dev"]["build"]["artifacts"][0]["docker"]["target"] == "dev"
    broken = copy.deepcopy(config)
    broken["build"]["artifacts"][0]["docker"]["dockerfil"] = "Dockerfile"
    assert list(validator.iter_errors(broken)), "the schema should reject an unknown field"


def test_the_dev_sync_rules_cover_the_python_sources():
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    for artifact in config["build"]["artifacts"]:
        rules = {(r["src"], r["dest"]) for r in artifact["sync"]["manual"]}
        assert rules == {("shared/**/*.py", "/app"), ("services/**/*.py", "/app")}, artifact["image"]

