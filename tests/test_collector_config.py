"""collector-config/: the collector configurations and the compose stack agree with each other.

No collector or Docker engine runs here, so what a typo would only reveal at
``docker compose up`` is checked statically: every pipeline names defined
components and every defined component is used, ports line up between the
collector, Prometheus, Grafana's data sources and the compose file, images
are pinned, published ports stay on 127.0.0.1, Grafana gets our provisioning
and dashboards, and the agent's loadbalancing exporter is complete.
``promtool`` (installed with Prometheus by scripts/install-system-packages) checks
prometheus.yaml for real.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from seedance_otel import dashboards

from system_binaries import require

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "collector-config"
COLLECTORS = ("otelcol.yaml", "otelcol-agent.yaml", "otelcol-gateway.yaml")
KINDS = ("receivers", "processors", "exporters", "connectors")


def load(name: str) -> Any:
    return yaml.safe_load((CONFIG / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    config: dict[str, Any] = load("docker-compose.yaml")
    return config


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.mark.parametrize("name", COLLECTORS)
def test_pipelines_use_defined_components_and_every_component_is_used(name):
    config = load(name)
    service = config["service"]
    pipelines = service["pipelines"]
    assert pipelines
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for pipeline_id, pipeline in pipelines.items():
        assert pipeline_id.split("/")[0] in ("traces", "metrics", "logs"), pipeline_id
        assert pipeline.get("receivers") and pipeline.get("exporters"), pipeline_id
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                defined = config.get(kind) or {}
                connectors = config.get("connectors") or {}
                assert component in defined or component in connectors, (
                    name,
                    pipeline_id,
                    component,
                )
                used["connectors" if component in connectors else kind].add(component)
        # memory_limiter first (refuse early), batch last (batch what survives).
        processors = pipeline.get("processors", [])
        assert processors[0] == "memory_limiter" and processors[-1] == "batch", pipeline_id
    for kind in KINDS:
        assert set(config.get(kind) or {}) == used[kind], (name, kind)
    assert set(service.get("extensions", [])) == set(config.get("extensions") or {})
    assert "health_check" in service["extensions"]
    assert _port(config["extensions"]["health_check"]["endpoint"]) == 13133


@pytest.mark.parametrize("name", COLLECTORS)
def test_receivers_listen_in_the_container_on_the_otlp_ports(name):
    protocols = load(name)["receivers"]["otlp"]["protocols"]
    # Since collector 0.104 the default host is localhost: unreachable in a container.
    for protocol, port in (("grpc", 4317), ("http", 4318)):
        if protocol in protocols:
            assert protocols[protocol]["endpoint"] == f"0.0.0.0:{port}"
    assert "grpc" in protocols


@pytest.mark.parametrize("name", ["otelcol.yaml", "otelcol-gateway.yaml"])
def test_each_signal_goes_to_its_backend(name, compose):
    config = load(name)
    exporters = config["exporters"]
    pipelines = config["service"]["pipelines"]
    assert pipelines["logs"]["exporters"] == ["otlphttp/loki"]
    assert exporters["otlphttp/loki"]["endpoint"] == "http://loki:3100/otlp"
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert exporters["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert exporters["otlp/jaeger"]["tls"]["insecure"] is True
    # Prometheus scrapes exactly where the collector's prometheus exporter listens.
    scrape = {job["job_name"]: job for job in load("prometheus.yaml")["scrape_configs"]}
    otelcol = scrape["otelcol"]
    assert otelcol["honor_labels"] is True  # keep job/instance from service.name/instance.id
    (target,) = otelcol["static_configs"][0]["targets"]
    assert target == f"otelcol:{_port(exporters['prometheus']['endpoint'])}"
    assert "otelcol" in compose["services"]


def test_agent_loadbalancing_exporters_are_complete():
    config = load("otelcol-agent.yaml")
    exporters = config["exporters"]
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["loadbalancing/traceid"]
    assert pipelines["logs"]["exporters"] == ["loadbalancing/traceid"]
    assert pipelines["metrics"]["exporters"] == ["loadbalancing/service"]
    assert exporters["loadbalancing/traceid"]["routing_key"] == "traceID"
    assert exporters["loadbalancing/service"]["routing_key"] == "service"
    gateway_port = _port(
        load("otelcol-gateway.yaml")["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    )
    for exporter in exporters.values():
        otlp = exporter["protocol"]["otlp"]
        assert "endpoint" not in otlp  # the resolver sets it per backend
        assert otlp["tls"]["insecure"] is True and otlp["timeout"]
        # Queue and retries in front of the routing: a per-gateway queue is
        # lost when the resolver drops that gateway.
        assert exporter["sending_queue"]["enabled"] is True
        assert exporter["retry_on_failure"]["enabled"] is True
        assert exporter["timeout"]
        assert otlp["sending_queue"]["enabled"] is False
        assert otlp["retry_on_failure"]["enabled"] is False
        resolvers = exporter["resolver"]
        assert len(resolvers) == 1, "configure exactly one resolver"
        dns = resolvers["dns"]
        assert dns["hostname"] and dns["port"] == gateway_port
    # The agent is a pure forwarder: no backend addresses in it.
    assert not set(exporters) - {"loadbalancing/traceid", "loadbalancing/service"}


def test_images_come_from_registries_that_do_not_rate_limit_and_are_patched(compose):
    services = compose["services"]
    collector = services["otelcol"]["image"]
    # A registry host (with a dot) first: not Docker Hub's anonymous pull limit.
    assert collector.startswith("ghcr.io/open-telemetry/"), collector
    grafana = services["grafana"]["image"]
    major, minor, patch = (int(p) for p in grafana.rsplit(":", 1)[1].split("."))
    assert (major, minor) == (11, 6) and patch >= 14, grafana
    # Jaeger v2's image listens on all interfaces already.
    assert "JAEGER_LISTEN_HOST" not in services["jaeger"].get("environment", {})


def test_prometheus_loads_the_alerting_rules():
    config = load("prometheus.yaml")
    rule_files = config["rule_files"]
    assert rule_files == ["alerts/*.yaml"]
    assert sorted(CONFIG.glob(rule_files[0])), "no rule file matches"


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), (name, image)
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and re.search(r"\d", tag), (name, image)


def test_published_ports_are_on_loopback_and_match_the_configs(compose):
    published: dict[str, dict[int, int]] = {}
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str), (name, entry)
            host, host_port, container_port = entry.split(":")
            assert host == "127.0.0.1", (name, entry)
            published.setdefault(name, {})[int(container_port)] = int(host_port)
    protocols = load("otelcol.yaml")["receivers"]["otlp"]["protocols"]
    otelcol = published["otelcol"]
    assert otelcol[_port(protocols["grpc"]["endpoint"])] == 4317
    assert otelcol[_port(protocols["http"]["endpoint"])] == 4318
    assert otelcol[13133] == 13133
    assert published["grafana"] == {3000: 3000}
    assert published["jaeger"] == {16686: 16686}
    # Jaeger's OTLP port stays inside the compose network (the collector's is published).
    assert 4317 not in published["jaeger"]
    # Grafana's data sources point at compose services and their ports.
    provisioned = yaml.safe_load(
        dashboards.provisioning_files()["provisioning/datasources/seedance.yaml"]
    )["datasources"]
    for datasource in provisioned:
        match = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"])
        assert match is not None, datasource["url"]
        host, port = match.groups()
        assert host in compose["services"], datasource["url"]
        assert int(port) in published[host], datasource["url"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path (relative to collector-config/), bind mounts only."""
    out = {}
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        if source.startswith("."):
            out[target] = source
    return out


def test_configs_and_provisioning_are_mounted(compose):
    services = compose["services"]
    for name, service in services.items():
        for source in _mounts(service).values():
            assert (CONFIG / source).exists(), (name, source)
    otelcol = services["otelcol"]
    config_path = otelcol["command"][0].split("=", 1)[1]
    assert _mounts(otelcol)[config_path] == "./otelcol.yaml"
    prometheus = services["prometheus"]
    assert f"--config.file={next(iter(_mounts(prometheus)))}" in prometheus["command"]
    assert _mounts(prometheus) == {
        "/etc/prometheus/prometheus.yaml": "./prometheus.yaml",
        "/etc/prometheus/alerts": "./alerts",
    }
    loki = services["loki"]
    assert _mounts(loki) == {"/etc/loki/loki.yaml": "./loki.yaml"}
    assert loki["command"] == ["-config.file=/etc/loki/loki.yaml"]

    grafana = _mounts(services["grafana"])
    assert (
        grafana["/etc/grafana/provisioning/datasources"]
        == "../dashboards/provisioning/datasources"
    )
    assert (
        grafana["/etc/grafana/provisioning/dashboards"] == "../dashboards/provisioning/dashboards"
    )
    provider = yaml.safe_load(
        dashboards.provisioning_files()["provisioning/dashboards/seedance.yaml"]
    )["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert grafana[dashboards_dir] == "../dashboards"
    for name in dashboards.dashboard_names():
        assert (CONFIG / "../dashboards" / name).is_file()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/seedance-overview.json"


def test_loki_accepts_otlp():
    loki = load("loki.yaml")
    (schema,) = loki["schema_config"]["configs"]
    # OTLP attributes become structured metadata: TSDB index, schema v13.
    assert schema["store"] == "tsdb" and schema["schema"] == "v13"
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["server"]["http_listen_port"] == 3100


def test_prometheus_config_is_valid_for_promtool(tmp_path):
    promtool = require("promtool", "prometheus")
    checked = subprocess.run(
        [promtool, "check", "config", str(CONFIG / "prometheus.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
