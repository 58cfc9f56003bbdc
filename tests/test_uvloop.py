"""Under uvloop: aiohttp and httpx faults are captured; what is not covered is said once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

uvloop = pytest.importorskip(
    "uvloop", reason="uvloop is an optional extra of the test environment"
)

import seedance_otel  # noqa: E402
from seedance_otel.instrumentation.asyncio_sockets import UVLOOP_NOTE  # noqa: E402

from faultservers import Action, HttpFaultServer  # noqa: E402


def test_library_faults_are_captured_under_uvloop(instrumented):
    import aiohttp
    import httpx

    async def main(url: str) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(url, data=b"x"):
                    out.append(None)
            except Exception as exc:
                out.append(exc)
        async with httpx.AsyncClient() as client:
            try:
                await client.post(url, content=b"x")
                out.append(None)
            except Exception as exc:
                out.append(exc)
        return out

    with HttpFaultServer(lambda info: Action.RST) as server:
        results = uvloop.run(main(server.url("/x")))
    assert all(isinstance(r, Exception) for r in results)
    libraries = sorted(s.library for s in seedance_otel.snapshots())
    assert libraries == ["aiohttp", "httpx"]


def test_uncovered_paths_are_said_once():
    script = textwrap.dedent(
        """
        import logging, seedance_otel
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        seedance_otel.instrument(exporter="none")
        seedance_otel.uninstrument()
        seedance_otel.instrument(exporter="none")
        seedance_otel.uninstrument()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(UVLOOP_NOTE) == 1
