"""``seedance-otel demo``: three traps, real OTLP, three findings, well under 30 s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seedance_otel.receiver import Receiver

ROOT = Path(__file__).parent.parent


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The demo as a user runs it, without our test suite's OTEL_/SEEDANCE_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SEEDANCE_"))}
    return subprocess.run(
        [sys.executable, "-m", "seedance_otel", "demo"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_finds_the_three_traps():
    proc = run_demo({})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "(embedded receiver)" in out
    assert out.count("  received: ") >= 6  # printed as they arrived over OTLP
    for trap in ("stale keep-alive", "server requires HTTP/2", "name server that never answers"):
        assert f"[found] {trap}" in out
    assert "[stale_keepalive]" in out and "[dns_timeout]" in out and "[alpn_" in out
    assert "peer idle timeout ~" in out  # the cliff in the idle histogram
    assert "keepalive_expiry" in out
    done = next(line for line in out.splitlines() if "done in" in line)
    assert float(done.rsplit(" ", 2)[1]) < 30


def test_demo_ships_to_the_configured_endpoint():
    with Receiver("127.0.0.1", None, 0) as receiver:
        proc = run_demo(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_SERVICE_NAME": "demo-to-collector",
            }
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "(embedded receiver)" not in proc.stdout
        assert receiver.wait_for_snapshots(6, 10)
        assert {item.service_name for item in receiver.snapshots} == {"demo-to-collector"}
