"""``seedance-otel receive`` as a user runs it: a process that prints events and writes JSONL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_receive_prints_and_writes_jsonl(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    jsonl = tmp_path / "faults.jsonl"
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seedance_otel",
            "receive",
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--jsonl",
            str(jsonl),
            "--exit-after",
            "2",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stderr is not None
        assert "listening on" in receiver.stderr.readline()
        app = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "import seedance_otel; seedance_otel.instrument();"
                    "from clients import run_steps; from faultservers import Action, HttpFaultServer\n"
                    "with HttpFaultServer(lambda info: Action.RST) as s:\n"
                    "    run_steps('httpx-sync', [('POST', s.url('/a')), ('POST', s.url('/b?token=x'))])\n"
                    "assert seedance_otel.flush(10)\n"
                ),
            ],
            env={
                **os.environ,
                "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}",
                "SEEDANCE_OTEL_EXPORTER": "otlp",
                "OTEL_SERVICE_NAME": "cli-test",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{http_port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert app.returncode == 0, app.stderr
        out, _err = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait(10)
    assert receiver.returncode == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("[cli-test] connection_reset httpx/request") for line in lines)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["url"].rsplit("/", 1)[1] for r in records] == ["a", "b?token=REDACTED"]
    assert all(r["service.name"] == "cli-test" for r in records)


def test_receive_reports_a_busy_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "seedance_otel",
                "receive",
                "--grpc-port",
                "-1",
                "--http-port",
                str(port),
                "--timeout",
                "1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert "seedance-otel receive:" in proc.stderr
