"""One run of the load-balancer story, as a script: SDK calls through HAProxy, then diagnose().

``python lb_sdk_cases.py '<json spec>'`` prints one JSON object: the calls
(span ids, outcome), the snapshots, the diagnosis findings and how many
requests the backend answered. ``tests/test_sdk_load_balancer.py`` runs it
inside a private network namespace (``unshare -n``) for the lost-FIN case,
where ``"lost_fin": true`` makes nftables drop HAProxy's FINs: the firewall
rule lives and dies with that namespace. The visible-FIN case calls
:func:`run_case` in the test process itself.

Spec keys: ``sdk`` (``openai``, ``anthropic``, ``openai-sync``), ``idle_s``
(HAProxy's idle timeout), ``gaps_s`` (idle time before each call after the
first), ``keepalive_s`` (the client's ``keepalive_expiry``; httpx2's default
when absent), ``lost_fin``, ``haproxy``, ``nft``, ``uvloop``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import seedance_otel  # noqa: E402

from lb_sdk import HAProxy, ModelApiBackend, drop_fins_from, run_sdk_calls  # noqa: E402


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True)
    if spec.get("uvloop"):
        import uvloop

        uvloop.install()
    try:
        with tempfile.TemporaryDirectory() as workdir, ModelApiBackend() as backend:
            with HAProxy(spec["haproxy"], Path(workdir), backend.port, spec["idle_s"]) as lb:
                if spec.get("lost_fin"):
                    drop_fins_from(spec["nft"], lb.port)
                calls = run_sdk_calls(
                    spec["sdk"], lb.url, spec["gaps_s"], keepalive_s=spec.get("keepalive_s")
                )
                port = lb.port
            answered = backend.requests
        findings = seedance_otel.diagnose()
        return {
            "lb_port": port,
            "calls": calls,
            "backend_requests": answered,
            "snapshots": [s.to_dict() for s in seedance_otel.snapshots()],
            "peer_stats": {
                f"{host}:{p}": stats for (host, p), stats in seedance_otel.peer_stats().items()
            },
            "findings": [
                {
                    "code": f.code,
                    "summary": f.summary,
                    "fix": f.fix,
                    "evidence": f.evidence,
                    "params": f.params,
                }
                for f in findings
            ],
        }
    finally:
        seedance_otel.uninstrument()


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("lost_fin"):
        # A fresh namespace has its loopback down.
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    print(json.dumps(run_case(spec), default=str))


if __name__ == "__main__":
    main()
