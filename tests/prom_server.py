"""A real Prometheus server for tests: /usr/bin/prometheus on 127.0.0.1, stopped on exit.

``PrometheusServer(workdir, targets, job=...)`` writes a scrape config
(scrape interval 1 s), starts the binary with a data directory under
``workdir`` and waits (bounded) until it is ready. ``query(expr)`` runs an
instant query through ``/api/v1/query``; ``label_values`` asks
``/api/v1/label/<name>/values`` as Grafana's ``label_values()`` does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from system_binaries import stop_process

PROMETHEUS = Path(os.environ.get("SEEDANCE_TEST_PROMETHEUS", "/usr/bin/prometheus"))
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusError(AssertionError):
    pass


class PrometheusServer:
    def __init__(self, workdir: Path, targets: list[str], *, job: str) -> None:
        for target in targets:
            if not target.startswith("127.0.0.1:"):
                raise ValueError("scrape loopback targets only")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yaml"
        self.log = workdir / "prometheus.log"
        self.config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {json.dumps(job)}\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        if not PROMETHEUS.exists():
            raise PrometheusError(
                f"{PROMETHEUS} is missing: run scripts/install-system-packages "
                "(Debian's prometheus package) to run the dashboard queries against it"
            )
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited early: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise PrometheusError(
            f"prometheus not ready after {_READY_TIMEOUT_S} s: {self.log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process, _STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: the query did not parse or run
            body = json.load(exc)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        """The whole ``/api/v1/query`` answer (``status``, ``data`` or ``error``)."""
        return self._get("/api/v1/query", [("query", expr)])

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        params = [("match[]", match)] if match else []
        body = self._get(f"/api/v1/label/{label}/values", params)
        if body.get("status") != "success":
            raise PrometheusError(f"label values of {label} for {match}: {body}")
        return list(body["data"])
