"""The opt-in rephrasing component: the generator rephrases, and a CronJob fine-tunes its model.

Everything the other deployment tests check runs on overlays/prod-rephrasing too (it is in
OVERLAYS: schemas, pod conventions, settings known to the code). These check what is particular to
the component: it alone turns rephrasing on, the job runs the gated fine-tune on the store the
services read, its network paths exist, it composes with the dev overlay, and skaffold's
`rephrasing` profile builds the image the job and the generator need.
"""

from __future__ import annotations

import os
import subprocess
import tomllib

import kubernetes_validate
import typer.main
import yaml

from elmo.cli import app
from elmo.tools import k8s_manifests
from elmo.tools.feedback_log import parse_start
from tests.unit.deploy.conftest import DEPLOY, OVERLAYS, REPO, of_kind
from tests.unit.deploy.test_schemas import KUBERNETES_VERSIONS, _apply_profile
from tests.unit.deploy.test_workloads import quantity

OVERLAY = "overlays/prod-rephrasing"
COMPONENT = DEPLOY / "components" / "rephrasing"
CRONJOB = "elmo-rephraser-tuning"
REPHRASE = "ELMO_GENERATOR_REPHRASE"
# Peak RSS of a whole `elmo train rephraser` run outside a pod (docs/learning.md).
TUNING_PEAK_BYTES = 2.35e9


def _generator(resources: list[dict]) -> dict:
    return of_kind(resources, "Deployment")["generator"]["spec"]["template"]["spec"]["containers"][0]


def _job_pod(resources: list[dict]) -> dict:
    return of_kind(resources, "CronJob")[CRONJOB]["spec"]["jobTemplate"]["spec"]["template"]


def _parse_elmo(argv: list[str]) -> dict:
    """The options the `elmo` command line would call its leaf command with (click parses; unknown options fail)."""
    assert argv[0] == "elmo"
    command, rest = typer.main.get_command(app), argv[1:]
    top_level = {opt for p in command.params for opt in p.opts}
    rest = [arg for arg in rest if arg not in top_level]
    while hasattr(command, "commands"):
        command, rest = command.commands[rest[0]], rest[1:]
    return command.make_context(command.name, rest).params | {"command": command.name}


def test_only_the_rephrasing_component_turns_rephrasing_on(builds):
    for overlay in OVERLAYS:
        env = {e["name"]: e.get("value") for e in _generator(builds[overlay]).get("env", [])}
        with_component = overlay == OVERLAY
        assert (env.get(REPHRASE) == "true") is with_component, overlay
        assert (CRONJOB in of_kind(builds[overlay], "CronJob")) is with_component, overlay
    # Nothing but the generator rephrases.
    for name, deployment in of_kind(builds[OVERLAY], "Deployment").items():
        if name != "generator":
            assert REPHRASE not in {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}, name


def test_the_rephrasing_generator_has_room_for_the_model(builds):
    plain, rephrasing = _generator(builds["overlays/prod"])["resources"], _generator(builds[OVERLAY])["resources"]
    # SmolLM2-135M served in float32: ~0.5 GB more than the generator without it.
    assert quantity(rephrasing["requests"]["memory"]) >= quantity(plain["requests"]["memory"]) + 0.5e9
    assert quantity(rephrasing["limits"]["memory"]) > quantity(rephrasing["requests"]["memory"])
    assert quantity(rephrasing["requests"]["cpu"]) >= 1
    # Serial rephrasings of up to ~3.4 s each must fit a batch under the stall limit of /healthz.
    env = {e["name"]: e["value"] for e in _generator(builds[OVERLAY])["env"]}
    from elmo.runtime.settings import RuntimeSettings

    assert int(env["ELMO_BATCH_MAX_RECORDS"]) * 3.4 < RuntimeSettings.model_fields["stall_after_s"].default / 2


def test_the_tuning_job_runs_the_gated_fine_tune_once_at_a_time(builds):
    cronjob = of_kind(builds[OVERLAY], "CronJob")[CRONJOB]
    spec, job = cronjob["spec"], cronjob["spec"]["jobTemplate"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    # A rejection (exit 1) is the gate's answer: not retried.
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = job["template"]["spec"]["containers"]
    options = _parse_elmo(container["command"] + container.get("args", []))
    assert options["command"] == "rephraser"
    assert options["source"] == "redis" and options["force"] is False, "through the promotion gate"
    parse_start(options["ratings_from"])
    assert options["store"] is None, "the store comes from ELMO_MODEL_STORE, as in the services"


def test_the_tuning_job_uses_the_generator_image_config_and_model_store(builds):
    resources = builds[OVERLAY]
    pod = _job_pod(resources)["spec"]
    (container,) = pod["containers"]
    generator = _generator(resources)
    assert container["image"] == generator["image"] == k8s_manifests.image("generator")
    built = {a["image"] for a in yaml.safe_load((REPO / "skaffold.yaml").read_text())["build"]["artifacts"]}
    assert container["image"] in built
    assert container["envFrom"] == generator["envFrom"], "the same hashed ConfigMap and optional Secret"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    store = volumes[mounts[k8s_manifests.MODEL_STORE_PATH]]["persistentVolumeClaim"]["claimName"]
    assert store == k8s_manifests.MODEL_STORE_CLAIM and store in of_kind(resources, "PersistentVolumeClaim")
    assert {m["mountPath"]: m["name"] for m in generator["volumeMounts"]}[k8s_manifests.MODEL_STORE_PATH] == "model-store"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource]), resource
    assert quantity(requests["memory"]) >= TUNING_PEAK_BYTES


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _allowed(policies: list[dict], direction: str, pod: dict, peer: dict, port: int) -> bool:
    """Whether some policy of `direction` selecting `pod` lets it talk to `peer` (same namespace) on `port`."""
    peers_key = "to" if direction == "egress" else "from"
    for policy in policies:
        spec = policy["spec"]
        if direction.capitalize() not in spec["policyTypes"] or not _selects(spec["podSelector"], pod):
            continue
        for rule in spec.get(direction, []):
            if port in {p["port"] for p in rule["ports"]} and any(
                "podSelector" in p and "namespaceSelector" not in p and _selects(p["podSelector"], peer) for p in rule[peers_key]
            ):
                return True
    return False


def test_the_tuning_job_reaches_kafka_and_redis_and_nothing_new_reaches_it(builds):
    resources = builds[OVERLAY]
    policies = list(of_kind(resources, "NetworkPolicy").values())
    job = _job_pod(resources)["metadata"]["labels"]
    kafka = {"strimzi.io/cluster": k8s_manifests.KAFKA_CLUSTER, "strimzi.io/kind": "Kafka"}
    redis = of_kind(resources, "StatefulSet")["redis"]["spec"]["template"]["metadata"]["labels"]
    for peer, port in ((kafka, 9092), (redis, 6379)):
        assert _allowed(policies, "egress", job, peer, port), (peer, port)
        assert _allowed(policies, "ingress", peer, job, port), (peer, port)
    # Not a service pod: not scraped, not in the services' policies; the base denies all ingress to it.
    assert job[k8s_manifests.COMPONENT_LABEL] not in {"consumer", "edge"}
    opening_ingress = [p for p in policies if "Ingress" in p["spec"]["policyTypes"] and p["spec"].get("ingress")]
    assert not any(_selects(p["spec"]["podSelector"], job) for p in opening_ingress)
    # The Kafka listener's own peers (Strimzi's policy) do not admit it: the component's policy must.
    listener = of_kind(resources, "Kafka")[k8s_manifests.KAFKA_CLUSTER]["spec"]["kafka"]["listeners"][0]
    assert not any("podSelector" in p and _selects(p["podSelector"], job) for p in listener["networkPolicyPeers"])


def test_the_component_composes_with_the_dev_overlay(kustomize, tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # Relative: kustomize refuses absolute paths to other kustomizations.
                "resources": [os.path.relpath(DEPLOY / "overlays" / "dev", tmp_path)],
                "components": [os.path.relpath(COMPONENT, tmp_path)],
            }
        )
    )
    result = subprocess.run([str(kustomize), "build", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {"name": REPHRASE, "value": "true"} in _generator(resources)["env"]
    assert CRONJOB in of_kind(resources, "CronJob")
    for resource in resources:
        if resource["kind"] in ("CronJob", "NetworkPolicy", "Deployment"):
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(resource, version, strict=True)
    # Everything the component adds lands in the namespace of the rest.
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {k8s_manifests.NAMESPACE}


def test_the_rephrasing_profile_builds_the_generator_with_the_extra_and_deploys_the_component():
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    (profile,) = [p for p in config["profiles"] if p["name"] == "rephrasing"]
    applied = _apply_profile(config, profile)
    with_args = [a for a in applied["build"]["artifacts"] if a["docker"].get("buildArgs")]
    assert [a["image"] for a in with_args] == [k8s_manifests.image("generator")]
    extras = with_args[0]["docker"]["buildArgs"]["EXTRAS"]
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert all(name in optional for name in extras.split(",")) and "rephrase" in extras.split(",")
    dockerfile = (REPO / with_args[0]["docker"]["dockerfile"]).read_text()
    assert 'ARG EXTRAS=""' in dockerfile, "the extra is opt-in: the default image has none"
    (path,) = applied["manifests"]["kustomize"]["paths"]
    overlay = yaml.safe_load((REPO / path / "kustomization.yaml").read_text())
    assert "../../components/rephrasing" in overlay["components"]
    assert path.removeprefix("deploy/k8s/") == OVERLAY
