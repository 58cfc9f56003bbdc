"""Every PromQL query of both dashboards, run against a real Prometheus scraping real faults.

A subprocess (``prom_fault_app.py``) turns seedance_otel on behind the OTel
Prometheus exporter and makes real faults on loopback with aiohttp and httpx:
resets on reused connections after idle, a burst of resets that overflows the
ring, a DNS timeout, ALPN mismatches, and connections left open. A real
Prometheus (``/usr/bin/prometheus``; ``scripts/install-system-packages`` installs
it) scrapes it every second. Then each panel query and each variable query of
both dashboards, with the variables set as a user would set them, must parse
and return at least one series: a renamed metric or label, or a typo in a
query, fails here instead of in front of a user.

The scrape job is named after the service: the dashboards select services by
the ``job`` label, which is what the collector's prometheus exporter (and
Prometheus' OTLP receiver) derive from ``service.name``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dashboards_model import (
    PROMETHEUS_UID,
    Query,
    apply_variable_regex,
    interpolate,
    load_all,
    parse_label_values,
    queries,
    variables,
)
from prom_server import PROMETHEUS, PrometheusServer
from system_binaries import require

SERVICE = "seedance-dashboards-test"
APP = Path(__file__).with_name("prom_fault_app.py")
DATA_DEADLINE_S = 30.0


class FaultApp:
    """The instrumented subprocess; its stdout lines are read by a thread into a queue."""

    def __init__(self, workdir: Path) -> None:
        self.stderr_path = workdir / "app.stderr"
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FaultApp:
        env = dict(os.environ, OTEL_SERVICE_NAME=SERVICE, SEEDANCE_OTEL_EXPORTER="none")
        with self.stderr_path.open("w") as stderr:
            self._process = subprocess.Popen(
                [sys.executable, str(APP)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, word: str, timeout_s: float) -> str:
        """The rest of the first stdout line starting with ``word``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {word} from the app in {timeout_s} s: {self.stderr()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the app exited before {word}: {self.stderr()}")
            if line.split(" ", 1)[0] == word:
                return line[len(word) :].strip()

    def send(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def __exit__(self, *exc: Any) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()  # the app's signal to let go of its connections
            process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _series(body: dict[str, Any]) -> list[dict[str, Any]]:
    result = body.get("data", {}).get("result", [])
    return result if isinstance(result, list) else []


def _wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def test_every_dashboard_query_returns_data_from_real_faults(tmp_path):
    require(str(PROMETHEUS), "prometheus")
    models = load_all()
    with FaultApp(tmp_path) as app:
        metrics_port = int(app.wait_for("METRICS", 30))
        with PrometheusServer(tmp_path, [f"127.0.0.1:{metrics_port}"], job=SERVICE) as prom:
            app.wait_for("ROUND1", 60)
            # Round 2 only after Prometheus holds a sample of round 1 (see the app).
            _wait_until(
                lambda: _series(
                    prom.query(f'seedance_connection_faults_total{{job="{SERVICE}"}}')
                ),
                20,
                "Prometheus to scrape the first round of faults",
            )
            time.sleep(1.5)
            app.send("go")
            ready = json.loads(app.wait_for("READY", 60))
            assert set(ready["kinds"]) >= {"connection_reset", "dns_timeout", "alpn_mismatch"}, (
                ready
            )
            assert ready["stats"]["dropped"] > 0, ready["stats"]
            peer, dns_name = ready["peer"], ready["dns_timeout_name"]

            # The variables as a user sets them: the overview with two peers
            # picked (Grafana regex-escapes them), the drill-down on one peer.
            settings = {
                "seedance-overview.json": {
                    "service_name": [SERVICE],
                    "loki_service_name": [SERVICE],
                    "peer": [peer, dns_name],
                },
                "seedance-peer.json": {
                    "service_name": [SERVICE],
                    "loki_service_name": [SERVICE],
                    "peer": [peer],
                },
            }
            assert set(settings) == set(models)

            prom_queries: list[tuple[Query, str]] = []
            for name, model in models.items():
                declared = variables(model)
                assert set(declared) == set(settings[name]), (name, sorted(declared))
                multi = {var: bool(spec.get("multi")) for var, spec in declared.items()}
                for query in queries(name, model):
                    if query.datasource_uid != PROMETHEUS_UID:
                        continue
                    prom_queries.append(
                        (query, interpolate(query.expr, settings[name], multi=multi))
                    )
            assert len(prom_queries) >= 30, len(prom_queries)

            # Scrapes arrive every second: retry, bounded, until every query has data.
            deadline = time.monotonic() + DATA_DEADLINE_S
            while True:
                failures = []
                answers = {}
                for query, expr in prom_queries:
                    body = prom.query(expr)
                    answers[query] = body
                    if body.get("status") != "success":
                        failures.append(
                            f"{query.where}: does not run: {body.get('error')}\n  {expr}"
                        )
                    elif not _series(body):
                        failures.append(f"{query.where}: no data\n  {expr}")
                if not failures or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            assert not failures, "\n".join(failures)
            print(f"\n{len(prom_queries)} PromQL queries returned data")

            # Variable queries: label_values() as Grafana runs it, then the regex.
            for name, model in models.items():
                values = {var: settings[name][var] for var in settings[name]}
                multi = {var: bool(spec.get("multi")) for var, spec in variables(model).items()}
                for var_name, spec in variables(model).items():
                    match, label = parse_label_values(
                        interpolate(spec["query"], values, multi=multi)
                    )
                    found = apply_variable_regex(
                        spec.get("regex", ""), prom.label_values(label, match)
                    )
                    expected = {"service_name": {SERVICE}, "loki_service_name": {SERVICE}}.get(
                        var_name, {peer, dns_name}
                    )
                    assert expected <= set(found), (name, var_name, found)

            # The data says what the panels promise.
            by_title = {
                (q.dashboard, q.panel_title, q.ref_id): _series(body)
                for q, body in answers.items()
            }

            def result(dashboard: str, title_part: str, ref: str = "A") -> list[dict[str, Any]]:
                hits = [
                    series
                    for (d, title, r), series in by_title.items()
                    if d == dashboard and title_part in title and r == ref
                ]
                assert len(hits) == 1, (dashboard, title_part)
                return hits[0]

            for dashboard in models:
                # The idle cliff: the middlebox forgets connections idle > 0.3 s,
                # the app reuses after 0.6 s and 1.1 s, so nothing at <= 0.5 s.
                buckets = {
                    float(s["metric"]["le"]): float(s["value"][1])
                    for s in result(dashboard, "find the cliff")
                }
                assert buckets[0.5] == 0 and buckets[float("inf")] > 0, buckets
                offers = {
                    (
                        tuple(json.loads(s["metric"]["seedance_tls_alpn_offered"])),
                        s["metric"].get("tls_next_protocol"),
                    )
                    for s in result(dashboard, "ALPN offered vs negotiated")
                }
                # string[] as on the log record; nothing negotiated: no label at all.
                assert {(("http/1.1",), None), (("http/1.1", "h2"), None)} <= offers, offers
            states = {
                s["metric"]["http_connection_state"]
                for s in result("seedance-overview.json", "Open connections: idle vs active")
            }
            assert states == {"idle", "active"}, states
            dropped = result("seedance-overview.json", "Snapshots exported, failed", "C")
            reasons = {
                key.removeprefix("dropped_")
                for key, count in ready["stats"].items()
                if key.startswith("dropped_") and count
            }
            assert reasons and {s["metric"]["error_type"] for s in dropped} == reasons
            failed_lookups = result("seedance-overview.json", "Failed DNS lookups")
            assert {s["metric"]["dns_question_name"] for s in failed_lookups} == {dns_name}
            dns_timeouts = result("seedance-overview.json", "DNS timeouts by name")
            assert {s["metric"]["dns_question_name"] for s in dns_timeouts} == {dns_name}
            assert all(float(s["value"][1]) > 0 for s in dns_timeouts), dns_timeouts
