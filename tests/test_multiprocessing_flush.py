"""Snapshots captured in multiprocessing children reach the sink, whatever the start method.

``fork`` and ``forkserver`` children end with ``os._exit``, so ``atexit``
never runs there; multiprocessing's own exit finalizers do, and flush them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "mp_children.py"
FAULTS = 5


@pytest.mark.parametrize("kind", ["process", "pool"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_child_snapshot_is_shipped(tmp_path: Path, method: str, kind: str) -> None:
    jsonl = tmp_path / "snapshots.jsonl"
    env = {
        **os.environ,
        "SEEDANCE_OTEL_EXPORTER": "jsonl",
        "SEEDANCE_OTEL_FILE": str(jsonl),
        # Longer than the children live: only the exit flush can ship them.
        "SEEDANCE_OTEL_EXPORT_INTERVAL_MS": "600000",
        "SEEDANCE_OTEL_STRICT": "1",
    }
    run = subprocess.run(
        [sys.executable, str(SCRIPT), method, kind, str(FAULTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    urls = [json.loads(line)["url"] for line in lines]
    tasks = 2 if kind == "process" else 4
    assert len(urls) == FAULTS * tasks, run.stderr
    assert all("/child/" in url for url in urls)
