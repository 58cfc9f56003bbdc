"""The alerting rules, proven by Prometheus's own ``promtool``: series in, alerts out.

``promtool check rules`` validates collector-config/alerts/*.yaml; ``promtool
test rules`` runs the cases below, each with series that must page and series
that must not (another fault kind, a slow trickle, a deliberate drop). The
expected summary and description are written out here; the runbook, a fixed
text, is taken from the rule so that it is compared too without being copied.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from system_binaries import require

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "collector-config" / "alerts" / "seedance-otel.rules.yaml"


def rules() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def fault(name: str, values: str, peer: str, kind: str, library: str, **labels: str):
    """A per-fault series of service ``shop``, as the fault metrics label it."""
    return series(
        name,
        values,
        job="shop",
        server_address=peer,
        seedance_library=library,
        seedance_fault_kind=kind,
        **labels,
    )


FAULTS = "seedance_connection_faults_total"
IDLE_COUNT = "seedance_connection_idle_before_fault_seconds_count"
EXPORTED = "seedance_snapshot_exported_total"

# (alert, input series, eval time that must stay quiet, eval time, expected alerts:
#  (labels, summary, description))
CASES: list[tuple[str, list[dict[str, str]], str, str, list[tuple[dict[str, str], str, str]]]] = [
    (
        "SeedanceStaleKeepAliveResets",
        [
            fault(IDLE_COUNT, "0+1x30", "api.internal", "connection_reset", "httpx"),
            # Idle closes are normal, however many.
            fault(IDLE_COUNT, "0+5x30", "api.internal", "peer_closed_idle", "httpx"),
            # One reset every ten minutes is noise.
            fault(IDLE_COUNT, "0+0.1x30", "slow.internal", "connection_reset", "aiohttp"),
        ],
        "4m",
        "15m",
        [
            (
                {"job": "shop", "server_address": "api.internal", "severity": "warning"},
                "shop: pooled connections to api.internal are reset after sitting idle",
                "10 resets on reused idle connections to api.internal in the last 10 minutes.",
            )
        ],
    ),
    (
        "SeedanceAlpnMismatch",
        [
            series(
                "seedance_tls_alpn_mismatches_total",
                "0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
                job="shop",
                server_address="h2only.internal",
                seedance_fault_kind="alpn_mismatch",
                seedance_tls_alpn_offered='[\\"http/1.1\\"]',
            ),
        ],
        "2m",
        "5m",
        [
            (
                {"job": "shop", "server_address": "h2only.internal", "severity": "warning"},
                "shop: h2only.internal rejects the protocols the client offers (ALPN)",
                "1 TLS handshakes with h2only.internal failed or were reset because of ALPN "
                "in the last 10 minutes.",
            )
        ],
    ),
    (
        "SeedanceDnsTimeouts",
        [
            fault(FAULTS, "0+1x30", "api.payments.internal", "dns_timeout", "aiohttp"),
            fault(
                FAULTS,
                "0+1x30",
                "api.internal",
                "connection_reset",
                "aiohttp",
                error_type="aiohttp.client_exceptions.ClientOSError",
            ),
        ],
        "4m",
        "15m",
        [
            (
                {"job": "shop", "server_address": "api.payments.internal", "severity": "critical"},
                "shop: resolving api.payments.internal times out",
                "10 connections to api.payments.internal failed in name resolution in the last "
                "10 minutes.",
            )
        ],
    ),
    (
        "SeedancePoolExhausted",
        [
            fault(
                FAULTS,
                "0+2x30",
                "api.internal",
                "pool_timeout",
                "httpx",
                error_type="httpx.PoolTimeout",
            ),
            fault(
                FAULTS,
                "0+2x30",
                "api.internal",
                "read_timeout",
                "httpx",
                error_type="httpx.ReadTimeout",
            ),
        ],
        "4m",
        "15m",
        [
            (
                {"job": "shop", "server_address": "api.internal", "severity": "warning"},
                "shop: requests to api.internal time out waiting for a pooled connection",
                "20 requests to api.internal found no free connection in time in the last "
                "10 minutes.",
            )
        ],
    ),
    (
        "SeedanceSnapshotsDropped",
        [
            series(EXPORTED, "0+10x30", job="shop"),
            series(
                EXPORTED,
                "0 0 0 0 0 6 6 6 6 6 6 6 6 6 6 6",
                job="shop",
                error_type="ring_overwrite",
            ),
            # SEEDANCE_OTEL_EXPORTER=none drops on purpose.
            series(EXPORTED, "0+50x30", job="batch", error_type="exporter_none"),
        ],
        "4m",
        "6m",
        [
            (
                {"job": "shop", "error_type": "ring_overwrite", "severity": "warning"},
                "shop: connection-fault snapshots were dropped (ring_overwrite)",
                "6 snapshots were dropped before export in the last 15 minutes.",
            )
        ],
    ),
    (
        "SeedanceSnapshotExportFailing",
        [
            series(EXPORTED, "0+10x30", job="shop"),
            series(EXPORTED, "0+3x30", job="shop", error_type="export_failed"),
            series(EXPORTED, "0+10x30", job="healthy"),
        ],
        "4m",
        "20m",
        [
            (
                {"job": "shop", "severity": "warning"},
                "shop: connection-fault snapshots fail to reach the collector",
                "45 snapshots failed to export in the last 15 minutes.",
            )
        ],
    ),
]


def promtool_tests() -> dict[str, Any]:
    by_name = rules()
    tests = []
    for alert, input_series, quiet_at, fires_at, expected in CASES:
        runbook = by_name[alert]["annotations"]["runbook"]
        tests.append(
            {
                "name": alert,
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"eval_time": quiet_at, "alertname": alert, "exp_alerts": []},
                    {
                        "eval_time": fires_at,
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": labels,
                                "exp_annotations": {
                                    "summary": summary,
                                    "description": description,
                                    "runbook": runbook,
                                },
                            }
                            for labels, summary, description in expected
                        ],
                    },
                ],
            }
        )
    return {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require("promtool", "prometheus")


def test_rules_are_valid_for_promtool(promtool):
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_alert_has_a_case_and_a_fixed_runbook():
    by_name = rules()
    assert {case[0] for case in CASES} == set(by_name)
    for name, rule in by_name.items():
        runbook = rule["annotations"]["runbook"]
        assert "{{" not in runbook and len(runbook) > 80, name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name


def test_series_in_alerts_out(promtool, tmp_path):
    path = tmp_path / "seedance-otel.rules.test.yaml"
    path.write_text(yaml.safe_dump(promtool_tests(), sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
