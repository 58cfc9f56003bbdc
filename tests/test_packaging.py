"""What the distribution declares: build requirements, the sdist's contents,
the bounds on the SDK's private modules we import, and a dependency
declaration under which ``opentelemetry-instrument`` loads us with neither
aiohttp nor httpx installed."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tarfile
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# The private modules seedance_otel.exporting.sinks and .otlp_transport
# import, and the distribution each belongs to.
PRIVATE_IMPORTS = [
    ("opentelemetry-sdk", "opentelemetry.sdk._logs", "ReadableLogRecord"),
    ("opentelemetry-sdk", "opentelemetry.sdk._logs.export", "LogRecordExportResult"),
    (
        "opentelemetry-exporter-otlp-proto-grpc",
        "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
        "OTLPLogExporter",
    ),
    (
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry.exporter.otlp.proto.http._log_exporter",
        "OTLPLogExporter",
    ),
    # Our own encoding, sent by the SDK exporters (otlp_transport.py).
    (
        "opentelemetry-exporter-otlp-proto-grpc",
        "opentelemetry.exporter.otlp.proto.grpc.exporter",
        "OTLPExporterMixin",
    ),
    (
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry.exporter.otlp.proto.http._common",
        "_is_request_too_large",
    ),
    (
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry.exporter.otlp.proto.http._common",
        "RequestPayloadTooLargeError",
    ),
]


def test_the_grpc_exporter_still_has_the_hooks_we_override():
    """otlp_transport subclasses the gRPC log exporter and overrides these."""
    from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin

    for name in ("_export", "_translate_data", "_initialize_channel_and_stub"):
        assert callable(getattr(OTLPExporterMixin, name, None)), (
            f"OTLPExporterMixin.{name} moved: seedance_otel/exporting/otlp_transport.py uses it"
        )


def declared(name: str) -> Requirement:
    for raw in distribution("seedance-otel").requires or []:
        requirement = Requirement(raw)
        if requirement.name == name and requirement.marker is None:
            return requirement
    raise AssertionError(f"seedance-otel does not depend on {name}")


def test_build_backend_understands_the_license_form():
    # `license = "Apache-2.0"` with `license-files` (PEP 639) needs setuptools 77.
    assert isinstance(PYPROJECT["project"]["license"], str)
    [setuptools] = [
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert not setuptools.specifier.contains("76.1.0")
    assert setuptools.specifier.contains("77.0.3")


@pytest.mark.parametrize(("dist", "module", "name"), PRIVATE_IMPORTS)
def test_private_sdk_modules_are_bounded_to_what_we_test(dist, module, name):
    requirement = declared(dist)
    assert any(spec.operator == "<" for spec in requirement.specifier), (
        f"{dist}: no upper bound, yet we import its private {module}"
    )
    installed = version(dist)
    assert requirement.specifier.contains(installed), (
        f"{dist} {installed} is outside the range seedance-otel is tested with "
        f"({requirement.specifier}): check that {module}.{name} still exists and behaves, "
        "then move the bound in pyproject.toml"
    )
    assert hasattr(importlib.import_module(module), name), (
        f"{module}.{name} moved in {dist} {installed}: seedance_otel/exporting/sinks.py imports it"
    )


def test_opentelemetry_instrument_loads_us_without_aiohttp_or_httpx(monkeypatch):
    """Plain asyncio coverage must be reachable through ``opentelemetry-instrument``:
    its loader skips a distribution whose ``instruments``/``instruments-any``
    requirements are unmet, so we declare none."""
    from opentelemetry.instrumentation import dependencies

    from seedance_otel.instrumentor import SeedanceInstrumentor

    # ``dependencies`` imports ``version`` without re-exporting it; the test
    # replaces the name that module looks up.
    real_version = dependencies.version  # type: ignore[attr-defined]

    def without_http_clients(name: str) -> str:
        if name.lower() in {"aiohttp", "httpx"}:
            raise PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(dependencies, "version", without_http_clients)
    assert dependencies.get_dist_dependency_conflicts(distribution("seedance-otel")) is None
    assert SeedanceInstrumentor()._check_dependency_conflicts() is None


def test_sdist_ships_the_whole_test_tree(tmp_path):
    """Either every test helper with the tests, or no tests: never test files
    that cannot run because conftest.py or a fault server is missing."""
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    archive = tmp_path / built.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected <= names, sorted(expected - names)
    assert "collector-config/alerts/seedance-otel.rules.yaml" in names
    assert "dashboards/seedance-overview.json" in names
    assert not [name for name in names if "__pycache__" in name]
