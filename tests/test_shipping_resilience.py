"""The collector down, hanging, refusing or back: the application never notices, nothing is lost silently."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import seedance_otel
from seedance_otel import instrumentor
from seedance_otel.receiver import Receiver

from clients import run_steps
from faultservers import Action, HttpFaultServer, closed_port

ROOT = Path(__file__).parent.parent


def invariant(stats: dict[str, int]) -> bool:
    return stats["captured"] == (
        stats["exported"] + stats["dropped"] + stats["export_failed"] + stats["pending"]
    )


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Hanging:
    """Accepts TCP connections and never says a word (a wedged collector)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
                self._held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    def __enter__(self) -> Hanging:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in (self._listener, *self._held):
            sock.close()


def start(monkeypatch, endpoint: str, protocol: str, **options) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    seedance_otel.uninstrument()
    options.setdefault("exporter", "otlp")
    options.setdefault("strict", True)
    instrumentor.start(options, {})


def storm(count: int) -> list[object]:
    """``count`` real resets through httpx, as fast as the loopback allows."""
    with HttpFaultServer(lambda info: Action.RST) as server:
        return run_steps("httpx-sync", [("POST", server.url(f"/{i}")) for i in range(count)])


@pytest.mark.parametrize(
    ("how", "protocol"),
    [
        ("closed-port", "grpc"),
        ("closed-port", "http/protobuf"),
        ("hanging", "grpc"),
        ("hanging", "http/protobuf"),
        ("unavailable", "grpc"),
        ("unavailable", "http/protobuf"),  # HTTP 503 with Retry-After
    ],
)
def test_collector_down_under_a_fault_storm(monkeypatch, how, protocol):
    port = closed_port()
    receiver = Receiver(
        "127.0.0.1", port if protocol == "grpc" else None, port if protocol != "grpc" else None
    )
    hanging = Hanging() if how == "hanging" else None
    if hanging is not None:
        hanging.__enter__()
        port = hanging.port
    if how == "unavailable":
        receiver.failure_mode = "unavailable"
        receiver.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        start(monkeypatch, endpoint, protocol, ring_size=16, batch_size=8, export_interval_ms=50)
        rss_before = rss_kib()
        results = storm(300)
        # The application saw only its library's own exceptions.
        import httpx

        assert all(isinstance(r, httpx.TransportError) for r in results), {
            type(r) for r in results
        }
        stats = seedance_otel.stats()
        assert invariant(stats), stats
        assert stats["captured"] == 300
        assert stats["dropped_ring_overwrite"] > 0
        assert stats["exported"] == 0
        assert rss_kib() - rss_before < 30_000, "memory must stay bounded"
        if how == "hanging":
            # The deadline is honoured while the exporter is stuck.
            started = time.monotonic()
            assert seedance_otel.flush(0.5) is False
            # Bounded by the deadline, not by the stuck exporter (generous: a
            # loaded machine may be slow to wake us, but not by 30 s).
            assert time.monotonic() - started < 5
        else:
            # The collector comes back: shipping resumes.
            if how == "closed-port":
                receiver.start()
            receiver.failure_mode = None
            storm(5)
            assert receiver.wait_for_snapshots(5, 20), seedance_otel.stats()
            assert seedance_otel.flush(10)
            stats = seedance_otel.stats()
            assert invariant(stats)
            assert stats["exported"] >= 5
        started = time.monotonic()
        seedance_otel.uninstrument()  # interrupts any retry backoff
        assert time.monotonic() - started < 20  # the 5 s shutdown timeout, plus slack
        stats = seedance_otel.stats()
        assert invariant(stats), stats
    finally:
        seedance_otel.uninstrument()
        receiver.stop()
        if hanging is not None:
            hanging.__exit__(None, None, None)


def test_flush_deadline(monkeypatch):
    with Hanging() as hanging:
        start(monkeypatch, f"http://127.0.0.1:{hanging.port}", "grpc", export_interval_ms=50)
        try:
            storm(3)
            started = time.monotonic()
            assert seedance_otel.flush(0.3) is False
            # Not early (it waited for the deadline), and not stuck on the exporter.
            assert 0.25 <= time.monotonic() - started < 5
            assert invariant(seedance_otel.stats())
        finally:
            seedance_otel.uninstrument()


def test_our_own_export_traffic_is_never_captured(monkeypatch):
    """Export attempts to a closed port fail over and over; none becomes a snapshot."""
    port = closed_port()
    start(monkeypatch, f"http://127.0.0.1:{port}", "http/protobuf", export_interval_ms=50)
    try:
        storm(2)
        time.sleep(1.0)  # several export attempts, each refused
        snaps = seedance_otel.snapshots()
        assert len(snaps) == 2
        assert all(s.server_port != port for s in snaps)
    finally:
        seedance_otel.uninstrument()


def run_script(
    body: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_interpreter_exit_flushes_after_asyncio_run(protocol):
    with Receiver("127.0.0.1", 0, 0) as receiver:
        endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
        proc = run_script(
            """
            import asyncio, seedance_otel
            seedance_otel.instrument()
            import aiohttp
            from faultservers import Action, HttpFaultServer

            async def main(url):
                async with aiohttp.ClientSession() as session:
                    try:
                        async with session.post(url, data=b"x"):
                            pass
                    except aiohttp.ClientError:
                        pass

            with HttpFaultServer(lambda info: Action.RST) as server:
                asyncio.run(main(server.url("/bye")))
            # no flush(): the interval is a minute; exit must ship it
            """,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "SEEDANCE_OTEL_EXPORT_INTERVAL_MS": "60000",
                "SEEDANCE_OTEL_EXPORTER": "otlp",
            },
        )
        assert proc.returncode == 0, proc.stderr
        assert receiver.wait_for_snapshots(1, 10)
        url = receiver.snapshots[0].snapshot.url
        assert url is not None and url.endswith("/bye")


def test_exit_is_bounded_when_the_collector_hangs():
    with Hanging() as hanging:
        started = time.monotonic()
        proc = run_script(
            """
            import seedance_otel
            seedance_otel.instrument()
            from clients import run_steps
            from faultservers import Action, HttpFaultServer
            with HttpFaultServer(lambda info: Action.RST) as server:
                run_steps("httpx-sync", [("POST", server.url("/x"))])
            """,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hanging.port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "SEEDANCE_OTEL_EXPORTER": "otlp",
                "SEEDANCE_OTEL_SHUTDOWN_TIMEOUT_S": "1",
            },
        )
        elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 15


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_ships_its_own_and_nothing_twice():
    with Receiver("127.0.0.1", None, 0) as receiver:
        proc = run_script(
            """
            import os, sys, seedance_otel
            seedance_otel.instrument()
            from clients import run_steps
            from faultservers import Action, HttpFaultServer
            with HttpFaultServer(lambda info: Action.RST) as server:
                run_steps("httpx-sync", [("POST", server.url(f"/parent/{i}")) for i in range(3)])
                assert seedance_otel.flush(10)
                run_steps("httpx-sync", [("POST", server.url("/parent/unflushed"))])
                pid = os.fork()
                if pid == 0:
                    ok = seedance_otel.stats()["captured"] == 0 and seedance_otel.snapshots() == []
                    run_steps("httpx-sync", [("POST", server.url(f"/child/{i}")) for i in range(2)])
                    ok = ok and seedance_otel.flush(10) and seedance_otel.stats()["exported"] == 2
                    os._exit(0 if ok else 3)
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0, status
            assert seedance_otel.flush(10)
            """,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "SEEDANCE_OTEL_EXPORTER": "otlp",
                "SEEDANCE_OTEL_EXPORT_INTERVAL_MS": "100",
            },
        )
        assert proc.returncode == 0, proc.stderr
        assert receiver.wait_for_snapshots(6, 10)
        time.sleep(0.5)  # anything shipped twice would arrive by now
        urls = [item.snapshot.url for item in receiver.snapshots if item.snapshot.url is not None]
        assert len(urls) == len(receiver.snapshots)
        paths = sorted(url.split("/", 3)[3] for url in urls)
    assert paths == ["child/0", "child/1", "parent/0", "parent/1", "parent/2", "parent/unflushed"]


def test_an_exporter_setting_the_sdk_rejects_does_not_break_instrument(monkeypatch, caplog):
    import logging

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "bogus")
    seedance_otel.uninstrument()
    with caplog.at_level(logging.WARNING, logger="seedance_otel"):
        seedance_otel.instrument(exporter="otlp", strict=True, export_interval_ms=50)
    try:
        assert any("cannot export snapshots" in r.getMessage() for r in caplog.records)
        storm(3)
        assert seedance_otel.flush(5)
        stats = seedance_otel.stats()
        assert stats["export_failed"] == 3 and invariant(stats)
    finally:
        seedance_otel.uninstrument()


def test_subprocess_with_preexec_fn_while_shipping():
    """CPython runs at-fork hooks in a subprocess child before exec: ours must be
    cheap and lock-free there, or Popen could hang."""
    proc = run_script(
        """
        import subprocess, seedance_otel
        seedance_otel.instrument()
        from clients import run_steps
        from faultservers import Action, HttpFaultServer
        with HttpFaultServer(lambda info: Action.RST) as server:
            run_steps("httpx-sync", [("POST", server.url(f"/{i}")) for i in range(50)])
        for _ in range(20):
            subprocess.run(["true"], preexec_fn=lambda: None, check=True, timeout=10)
        assert seedance_otel.flush(10)
        """,
        {
            "SEEDANCE_OTEL_EXPORTER": "jsonl",
            "SEEDANCE_OTEL_FILE": os.devnull,
            "SEEDANCE_OTEL_BATCH_SIZE": "1",
        },
    )
    assert proc.returncode == 0, proc.stderr
