"""The packaged Grafana dashboards: valid models, known data sources, honest queries, export.

What Grafana cannot check until someone opens a panel is checked here: every
panel has a data source whose uid the provisioning defines, every query
refers only to variables the dashboard defines, and every LogQL query only to
attributes seedance-otel actually puts on its log records (derived from
``seedance_otel.exporting.attributes``, with Loki's dots-to-underscores
naming). The PromQL side runs against a real Prometheus in
test_prometheus_dashboards.py.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from seedance_otel import dashboards
from seedance_otel.dashboards import cli as dashboards_cli
from seedance_otel.exporting.attributes import WIRE_ATTRIBUTES

from dashboards_model import (
    LOKI_UID,
    PROMETHEUS_UID,
    interpolate,
    iter_panels,
    load_all,
    queries,
    variables,
)

ROOT = Path(__file__).resolve().parent.parent
NO_QUERY_PANELS = {"row", "text"}

# What Loki adds itself: the index label from service.name, and the record's ids.
LOKI_LABELS = {"service_name"}
LOKI_METADATA = {"trace_id", "span_id"}

# The Prometheus names the OTel exporter gives our instruments (metrics.py).
REQUIRED_METRICS = {
    "seedance_connection_faults_total",
    "seedance_connection_idle_before_fault_seconds_bucket",
    "seedance_tls_alpn_mismatches_total",
    "seedance_snapshot_exported_total",
    "http_client_open_connections",
    "http_client_connection_duration_seconds_bucket",
    "dns_lookup_duration_seconds_bucket",
}


def loki_name(attribute: str) -> str:
    return attribute.replace(".", "_")


EMITTED = {loki_name(a) for a in WIRE_ATTRIBUTES}


@pytest.fixture(scope="module")
def models():
    return load_all()


@pytest.fixture(scope="module")
def provisioned_datasources():
    text = dashboards.provisioning_files()["provisioning/datasources/seedance.yaml"]
    return {ds["uid"]: ds for ds in yaml.safe_load(text)["datasources"]}


def test_both_dashboards_are_packaged_and_match_the_repository(models):
    assert sorted(models) == ["seedance-overview.json", "seedance-peer.json"]
    on_disk = {
        str(p.relative_to(ROOT / "dashboards")).replace("\\", "/"): p.read_text(encoding="utf-8")
        for p in (ROOT / "dashboards").rglob("*")
        if p.suffix in (".json", ".yaml")
    }
    assert dashboards.packaged_files() == on_disk


@pytest.mark.parametrize(
    "name", ["seedance-overview.json", "seedance-peer.json"], ids=lambda n: n.split(".")[0]
)
def test_dashboard_model_is_valid(models, name):
    model = models[name]
    assert model["uid"] == name.removesuffix(".json") and len(model["uid"]) <= 40
    assert model["title"].startswith("seedance-otel")
    assert model["description"]
    assert isinstance(model["schemaVersion"], int) and model["schemaVersion"] >= 36
    assert model["id"] is None  # ids belong to one Grafana instance; uids travel
    assert "version" not in model
    panels = list(iter_panels(model))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(pos), panel["title"]
        assert all(isinstance(pos[k], int) and pos[k] >= 0 for k in "hwxy")
        assert pos["w"] >= 1 and pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        assert panel["title"].strip()
        if panel["type"] in NO_QUERY_PANELS:
            continue
        # A user must learn from the panel itself what to look for.
        assert len(panel.get("description", "")) >= 80, panel["title"]
        assert panel["datasource"]["uid"] in (PROMETHEUS_UID, LOKI_UID), panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_datasource_uid_is_provisioned_with_its_type(models, provisioned_datasources):
    for name, model in models.items():
        used = dashboards.datasource_uids(model)
        assert used == {PROMETHEUS_UID, LOKI_UID}, (name, used)
        for uid in used:
            assert uid in provisioned_datasources, (name, uid)
    for uid, kind in dashboards.DATASOURCE_UIDS.items():
        assert provisioned_datasources[uid]["type"] == kind
    for name, model in models.items():
        for panel in iter_panels(model):
            if panel["type"] in NO_QUERY_PANELS:
                continue
            expected = {"prometheus": PROMETHEUS_UID, "loki": LOKI_UID}[
                panel["datasource"]["type"]
            ]
            assert panel["datasource"]["uid"] == expected, (name, panel["title"])


def test_loki_links_trace_ids_to_jaeger(provisioned_datasources):
    loki = provisioned_datasources[LOKI_UID]
    (derived,) = loki["jsonData"]["derivedFields"]
    # Loki's OTLP ingestion keeps the trace id as structured metadata `trace_id`.
    assert derived["matcherType"] == "label" and derived["matcherRegex"] == "trace_id"
    assert derived["datasourceUid"] == "seedance-jaeger"
    # `$$` is a literal `$` in provisioning files; Grafana then sees ${__value.raw}.
    assert derived["url"] == "$${__value.raw}"
    jaeger = provisioned_datasources["seedance-jaeger"]
    assert jaeger["jsonData"]["tracesToLogsV2"]["datasourceUid"] == LOKI_UID


def test_variables_and_references(models):
    for name, model in models.items():
        declared = variables(model)
        assert {"service_name", "peer", "loki_service_name"} == set(declared), name
        for var in declared.values():
            assert var["datasource"]["uid"] == PROMETHEUS_UID
            assert var["description"]
        # Every variable a query uses is defined (interpolate raises otherwise).
        values = {var: ["x"] for var in declared}
        for query in queries(name, model):
            interpolate(query.expr, values)
        for var in declared.values():
            interpolate(var["query"], values)
    assert models["seedance-overview.json"]["templating"]["list"][0]["name"] == "service_name"
    peer_var = variables(models["seedance-peer.json"])["peer"]
    assert peer_var["multi"] is False and peer_var["includeAll"] is False


def test_every_seedance_metric_has_a_panel(models):
    text = " ".join(q.expr for name, model in models.items() for q in queries(name, model))
    for metric in REQUIRED_METRICS:
        assert re.search(rf"\b{metric}\b", text), metric
    # Counters are never graphed raw: always rate()/increase().
    for name, model in models.items():
        for query in queries(name, model):
            for counter in re.findall(r"\b\w+_total\b", query.expr):
                assert re.search(rf"(rate|increase)\(\s*{counter}\b", query.expr), query.where


def _split_pipeline(expr: str) -> tuple[str, list[str]]:
    """A LogQL log query -> (stream selector, pipeline stages), quotes respected."""
    assert expr.startswith("{"), expr
    end = expr.index("}")
    selector, rest = expr[1:end], expr[end + 1 :]
    stages, current, quote = [], "", ""
    for char in rest:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in '"`':
            quote = char
            current += char
        elif char == "|":
            stages.append(current.strip())
            current = ""
        else:
            current += char
    stages.append(current.strip())
    return selector, [s for s in stages if s]


def test_logql_references_only_what_we_emit(models):
    logql = [
        q
        for name, model in models.items()
        for q in queries(name, model)
        if q.datasource_uid == LOKI_UID
    ]
    assert len(logql) == 2  # the events panel of each dashboard
    for query in logql:
        selector, stages = _split_pipeline(query.expr)
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
            assert label in LOKI_LABELS, (query.where, label)
        used: set[str] = set()
        for stage in stages:
            if stage.startswith("line_format"):
                for block in re.findall(r"\{\{(.*?)\}\}", stage):
                    used |= set(re.findall(r"\.(\w+)", block))
                continue
            filtered = re.match(r"(\w+)\s*(=~|!~|!=|==|=|>=|<=|>|<)", stage)
            assert filtered, f"{query.where}: unexpected LogQL stage {stage!r}"
            used.add(filtered.group(1))
        unknown = used - EMITTED - LOKI_METADATA
        assert not unknown, f"{query.where}: not emitted by seedance-otel: {sorted(unknown)}"
        # Only our fault events, whatever else the service logs.
        assert 'seedance_fault_kind != ""' in stages
        assert {"seedance_connection_idle", "network_peer_address", "server_address"} <= used


def test_peer_links_point_at_the_drill_down(models):
    links = [
        link["url"]
        for panel in iter_panels(models["seedance-overview.json"])
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert links
    for url in links:
        assert url.startswith("/d/seedance-peer/") and "var-peer=" in url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedance-otel")
    dashboards_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_export_writes_dashboards_and_provisioning(tmp_path, capsys):
    args = _parser().parse_args(["dashboards", "export", str(tmp_path / "out")])
    assert args.func(args) == 0
    written = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert written == sorted(dashboards.packaged_files())
    assert written == [
        "provisioning/dashboards/seedance.yaml",
        "provisioning/datasources/seedance.yaml",
        "seedance-overview.json",
        "seedance-peer.json",
    ]
    for name in ("seedance-overview.json", "seedance-peer.json"):
        exported = json.loads((tmp_path / "out" / name).read_text())
        assert exported == dashboards.load_dashboard(name)
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4 and all(Path(p).is_file() for p in printed)
    # Exporting again replaces the files (an upgrade), it does not fail.
    assert args.func(args) == 0


def test_export_into_a_file_fails_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    args = _parser().parse_args(["dashboards", "export", str(blocker)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("seedance-otel dashboards: error: ")


def test_dashboards_without_action_prints_usage(capsys):
    args = _parser().parse_args(["dashboards"])
    assert args.func(args) == 2
    assert "export" in capsys.readouterr().err


def test_table_drill_downs_read_the_row_not_series_labels(models):
    """In a table, ``${__field.labels.X}`` is empty: the row's value is ``${__data.fields.X}``."""
    for name, model in models.items():
        for panel in iter_panels(model):
            links = panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
            for link in links:
                if panel["type"] == "table":
                    assert "__field.labels" not in link["url"], (name, panel["title"])
                    assert "${__data.fields.server_address}" in link["url"], (name, panel["title"])


def test_dashboard_links_send_no_multi_value_to_a_single_value_variable(models):
    peer_dashboard_vars = variables(models["seedance-peer.json"])
    assert peer_dashboard_vars["peer"]["multi"] is False
    for link in models["seedance-overview.json"]["links"]:
        if "/d/seedance-peer/" in link["url"]:
            # includeVars would send var-peer=$__all from the overview's multi-value peer.
            assert link["includeVars"] is False
            assert "var-peer" not in link["url"]


def test_loki_selectors_stay_valid_when_no_service_is_known(models):
    """With no metrics yet, ``$loki_service_name`` expands to nothing; Loki rejects a
    selector whose every matcher matches the empty string."""
    for name, model in models.items():
        for query in queries(name, model):
            if query.datasource_uid != LOKI_UID:
                continue
            selector = query.expr[1 : query.expr.index("}")]
            empty = selector.replace("$loki_service_name", "")
            assert re.search(r'\w+=~"\.\+"', empty), (query.where, empty)


def test_every_variable_has_a_current_value(models):
    for name, model in models.items():
        for var_name, var in variables(model).items():
            current = var["current"]
            assert {"text", "value"} <= set(current), (name, var_name)
