"""The zero-code paths cover httpx2: ``opentelemetry-instrument`` and ``import seedance_otel.auto``.

An application built on an SDK has httpx2 and neither httpx nor aiohttp; our
instrumentor must still load (no dependency check refuses it) and record
httpx2's faults.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import opentelemetry.instrumentation.dependencies as dependencies
import pytest

from seedance_otel.instrumentation.registry import library_named
from seedance_otel.instrumentor import SeedanceInstrumentor
from seedance_otel.receiver import Receiver

from faultservers import Action, HttpFaultServer
from test_zero_code import BIN, run

APP = """
import httpx2

with httpx2.Client() as client:
    try:
        client.post(URL + "/httpx2", content=b"x")
    except httpx2.HTTPError:
        pass
"""


def test_instrumentor_loads_with_httpx2_alone(monkeypatch):
    """Only httpx2 installed (as under the SDKs): no dependency conflict."""
    # Not re-exported by that module; patched where it is looked up.
    real_version = dependencies.version  # type: ignore[attr-defined]

    def version(name: str) -> str:
        if name in ("aiohttp", "httpx"):
            raise dependencies.PackageNotFoundError(name)  # type: ignore[attr-defined]
        return real_version(name)

    monkeypatch.setattr(dependencies, "version", version)
    assert SeedanceInstrumentor()._check_dependency_conflicts() is None
    httpx2 = library_named("httpx2")
    assert httpx2 is not None and httpx2.modules == ("httpcore2",)


@pytest.mark.parametrize("path", ["opentelemetry-instrument", "import-auto"])
def test_zero_code_records_httpx2(tmp_path: Path, path: str) -> None:
    with (
        HttpFaultServer(lambda info: Action.RST) as server,
        Receiver("127.0.0.1", 0, None) as receiver,
    ):
        first = "import seedance_otel.auto  # noqa\n" if path == "import-auto" else ""
        app = tmp_path / "app.py"
        app.write_text(first + f"URL = {server.url('')!r}\n" + textwrap.dedent(APP))
        argv = [sys.executable, str(app)]
        if path == "opentelemetry-instrument":
            argv = [str(BIN / "opentelemetry-instrument"), *argv]
        proc = run(argv, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint}, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert receiver.wait_for_snapshots(1, 20), receiver.requests
        [item] = receiver.snapshots
    assert item.snapshot.library == "httpx2"
    assert item.snapshot.url is not None and item.snapshot.url.endswith("/httpx2")
