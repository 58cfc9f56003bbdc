"""Shared fixtures: an instrumented process (strict mode), TLS material, clean state."""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Our own tests never ship anywhere unless a test asks for it, and never hide
# an internal error.
os.environ.setdefault("SEEDANCE_OTEL_EXPORTER", "none")
os.environ.setdefault("SEEDANCE_OTEL_STRICT", "1")
# Tests count faults one snapshot each; the fault-storm tests turn collapsing on.
os.environ.setdefault("SEEDANCE_OTEL_COLLAPSE_PER_S", "0")


@pytest.fixture
def instrumented() -> Iterator[None]:
    import seedance_otel

    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True)
    try:
        yield
    finally:
        seedance_otel.uninstrument()


@pytest.fixture(scope="session")
def ca():
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(ca) -> ssl.SSLContext:
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


@pytest.fixture
def client_ssl_context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
