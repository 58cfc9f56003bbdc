"""The two zero-code paths, end to end, as subprocesses against a real OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seedance_otel.receiver import Receiver

from faultservers import Action, HttpFaultServer

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent

APP = """
import asyncio
import aiohttp
import httpx

async def main(url):
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url + "/aiohttp", data=b"x"):
                pass
        except aiohttp.ClientError:
            pass
    with httpx.Client() as client:
        try:
            client.post(url + "/httpx", content=b"x")
        except httpx.HTTPError:
            pass

asyncio.run(main(URL))
"""


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "zero-code-app",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "SEEDANCE_OTEL_EXPORTER": "otlp",
        **env,
    }
    return subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def server():
    with HttpFaultServer(lambda info: Action.RST) as s:
        yield s


def write_app(tmp_path: Path, url: str, first_line: str = "") -> Path:
    app = tmp_path / "app.py"
    app.write_text(first_line + f"URL = {url!r}\n" + textwrap.dedent(APP))
    return app


def run_app(
    tmp_path: Path,
    url: str,
    receiver: Receiver,
    first_line: str,
    env: dict[str, str] | None = None,
) -> None:
    """Run the app with ``first_line`` prepended, exporting to ``receiver``; it must exit 0."""
    app = write_app(tmp_path, url, first_line=first_line)
    proc = run(
        [sys.executable, str(app)],
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint, **(env or {})},
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr


def check_events_join_client_spans(receiver: Receiver) -> None:
    assert receiver.wait_for_snapshots(2, 20), receiver.requests
    assert receiver.wait_for_spans(2, 20), receiver.requests
    snapshots = {item.snapshot.library: item for item in receiver.snapshots}
    assert set(snapshots) == {"aiohttp", "httpx"}
    client_spans = {(s.trace_id, s.span_id): s for s in receiver.spans if s.kind == 3}  # CLIENT
    for library, item in snapshots.items():
        assert item.service_name == "zero-code-app"
        snap = item.snapshot
        assert snap.trace_id is not None, library
        # aiohttp may retry (one span covers both attempts); the event belongs
        # to the contrib client span of that request.
        assert (snap.trace_id, snap.span_id) in client_spans, (library, snap, client_spans)


def test_opentelemetry_instrument_loads_us(tmp_path, server):
    with Receiver("127.0.0.1", 0, None) as receiver:
        app = write_app(tmp_path, server.url(""))
        proc = run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, str(app)],
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint},
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        check_events_join_client_spans(receiver)


def test_import_auto_first_line(tmp_path, server):
    with Receiver("127.0.0.1", 0, None) as receiver:
        run_app(tmp_path, server.url(""), receiver, "import seedance_otel.auto  # noqa\n")
        check_events_join_client_spans(receiver)


def test_disabled_means_nothing(tmp_path, server):
    with Receiver("127.0.0.1", 0, None) as receiver:
        run_app(
            tmp_path,
            server.url(""),
            receiver,
            "import seedance_otel.auto  # noqa\n"
            "import aiohttp.connector, ssl\n"
            "assert not hasattr(aiohttp.connector.BaseConnector._release, '__wrapped__')\n"
            "assert not hasattr(ssl.SSLContext.set_alpn_protocols, '__wrapped__')\n",
            {"SEEDANCE_OTEL_ENABLED": "false"},
        )
        assert not receiver.wait_for_snapshots(1, 1.0)
        assert receiver.spans == []  # no SDK set-up either


LOGGING_APP = """
import logging
logging.getLogger("shop").warning("hello from the application")
"""


def test_import_auto_sets_up_the_sdk_as_opentelemetry_instrument_does(tmp_path):
    """The SDK's own configurator runs: OTEL_LOGS_EXPORTER gives the application a
    logs pipeline, which configuring tracer and meter providers by hand never did."""
    app = tmp_path / "app.py"
    app.write_text("import seedance_otel.auto  # noqa\n" + LOGGING_APP)
    proc = run(
        [sys.executable, str(app)],
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "console",
            "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
            "SEEDANCE_OTEL_EXPORTER": "none",
        },
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hello from the application" in proc.stdout, proc.stdout + proc.stderr
    assert '"service.name": "zero-code-app"' in proc.stdout


@pytest.mark.parametrize("disabled", ["seedance", "*", "httpx, seedance"])
def test_import_auto_honours_disabled_instrumentations(tmp_path, server, disabled):
    with Receiver("127.0.0.1", 0, None) as receiver:
        run_app(
            tmp_path,
            server.url(""),
            receiver,
            "import seedance_otel.auto  # noqa\n"
            "import ssl\n"
            "assert not hasattr(ssl.SSLContext.set_alpn_protocols, '__wrapped__')\n",
            {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled},
        )
        assert not receiver.wait_for_snapshots(1, 1.0)
        if disabled == "seedance":
            # The SDK and the contrib instrumentations still ran: client spans arrived.
            assert receiver.wait_for_spans(2, 20), receiver.requests


def test_import_auto_after_the_application_configured_its_sdk(tmp_path, server):
    """Providers set in code first are kept; only the instrumentations are enabled."""
    with Receiver("127.0.0.1", 0, None) as receiver:
        run_app(
            tmp_path,
            server.url(""),
            receiver,
            "from opentelemetry import trace\n"
            "from opentelemetry.sdk.trace import TracerProvider\n"
            "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
            "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter\n"
            "mine = TracerProvider()\n"
            "mine.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))\n"
            "trace.set_tracer_provider(mine)\n"
            "import seedance_otel.auto  # noqa\n"
            "assert trace.get_tracer_provider() is mine\n",
        )
        check_events_join_client_spans(receiver)
