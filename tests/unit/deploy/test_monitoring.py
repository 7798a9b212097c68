"""The dashboard and the scrape config point at metrics and pods that exist."""

from __future__ import annotations

import json
import re

import yaml

from elmo.runtime.metrics import ServiceMetrics
from tests.unit.deploy.conftest import DEPLOY, of_kind

METRIC = re.compile(r"\b(elmo_[a-z_]+)\b")


def exposed_metric_names() -> dict[str, str]:
    """Sample name -> family name of everything a service's /metrics shows."""
    metrics = ServiceMetrics("probe")
    metrics.consumed(1)
    metrics.produced(1)
    metrics.duplicates(1)
    metrics.failed()
    metrics.dead_lettered("invalid")
    metrics.batch(1, 0.01)
    metrics.end_to_end(0.1)
    metrics.model_loaded("model", "v1")
    return {sample.name: family.name for family in metrics.registry.collect() for sample in family.samples}


def test_every_dashboard_query_uses_metrics_the_runtime_exposes_and_shows_them_all():
    dashboard = json.loads((DEPLOY / "base/monitoring/grafana-dashboard.json").read_text())
    exposed = exposed_metric_names()
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names and names <= set(exposed), (panel["title"], names - set(exposed))
            used |= {exposed[n] for n in names}
    assert used == set(exposed.values())


def test_the_dashboard_and_scrape_config_ship_as_config_maps(builds):
    config_maps = of_kind(builds["base"], "ConfigMap")
    dashboard = config_maps["elmo-grafana-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["elmo-services.json"])["uid"] == "elmo-services"
    (job,) = yaml.safe_load(config_maps["elmo-prometheus-scrape"]["data"]["elmo-scrape-config.yml"])
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["elmo"]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep == [{"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"}]


def test_every_service_pod_is_annotated_for_scraping_on_its_http_port(builds):
    for name, deployment in of_kind(builds["base"], "Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}, name
