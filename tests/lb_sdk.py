"""The 8-second load-balancer story, end to end: real SDKs, a real HAProxy, a fixture model API.

* :class:`ModelApiBackend` answers the two endpoints the SDKs call
  (``POST /v1/chat/completions`` for OpenAI, ``POST /v1/messages`` for
  Anthropic) with minimal valid bodies, on 127.0.0.1, keeping connections
  alive as long as the client likes.
* :class:`HAProxy` runs ``/usr/sbin/haproxy`` in front of it on a free
  loopback port with ``timeout client`` / ``timeout http-keep-alive`` set to
  the idle timeout under test, and stops it on exit.
* :func:`drop_fins_from` makes HAProxy's FINs disappear with nftables, as a
  load balancer that forgets connections does: the client's next request on
  the connection then meets a RST. It changes the firewall of the namespace it
  runs in, so it is only used inside ``unshare -n`` (see ``lb_sdk_cases.py``).
* :func:`run_sdk_calls` makes one SDK call per idle gap, each in its own
  span, and returns the spans' ids so the tests can check which request each
  snapshot blames.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from system_binaries import stop_process

__all__ = [
    "HAProxy",
    "ModelApiBackend",
    "drop_fins_from",
    "free_port",
    "run_sdk_calls",
]

_READY_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0

_OPENAI_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "fixture",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
_ANTHROPIC_REPLY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "fixture",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
REPLIES = {"/v1/chat/completions": _OPENAI_REPLY, "/v1/messages": _ANTHROPIC_REPLY}


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: HAProxy's timeout is the one under test

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        reply = REPLIES.get(self.path.split("?")[0])
        body = json.dumps(reply if reply is not None else {"error": "not found"}).encode()
        self.send_response(200 if reply is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.requests += 1  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """HAProxy drops its pooled server connections when it stops: not news."""


class ModelApiBackend:
    """The model API behind the load balancer (127.0.0.1 only)."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = 0  # type: ignore[attr-defined]
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        return int(self._server.requests)  # type: ignore[attr-defined]

    def __enter__(self) -> ModelApiBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_STOP_TIMEOUT_S)


class HAProxy:
    """``haproxy`` in the foreground on a free loopback port, closing idle clients after ``idle_s``."""

    def __init__(self, binary: str, workdir: Path, backend_port: int, idle_s: float) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "haproxy.cfg"
        idle_ms = round(idle_s * 1000)
        self.config.write_text(
            "global\n"
            "  maxconn 256\n"
            "defaults\n"
            "  mode http\n"
            "  option http-keep-alive\n"
            "  timeout connect 5s\n"
            f"  timeout client {idle_ms}ms\n"
            f"  timeout http-keep-alive {idle_ms}ms\n"
            "  timeout server 30s\n"
            "frontend api\n"
            f"  bind 127.0.0.1:{self.port}\n"
            "  default_backend model\n"
            "backend model\n"
            f"  server app 127.0.0.1:{backend_port}\n"
        )
        self.log = workdir / "haproxy.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HAProxy:
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"haproxy did not listen on {self.port}: {self.log.read_text()}")

    def __exit__(self, *exc: Any) -> None:
        process, self._process = self._process, None
        stop_process(process, _STOP_TIMEOUT_S)


def drop_fins_from(nft: str, port: int) -> None:
    """Drop every TCP FIN sent from ``port`` (this network namespace only)."""
    ruleset = (
        "table inet lb_lost_fin {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    tcp sport {port} tcp flags & fin == fin drop\n"
        "  }\n"
        "}\n"
    )
    subprocess.run([nft, "-f", "-"], input=ruleset.encode(), check=True, timeout=30)


def _span_ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def run_sdk_calls(
    sdk: str, base_url: str, gaps_s: list[float], *, keepalive_s: float | None = None
) -> list[dict[str, Any]]:
    """One call per gap (sleeping the gap first, none before the first call).

    ``sdk`` is ``openai``/``anthropic`` (async clients, on the running loop
    policy), or ``openai-sync``. Each call runs in its own span; the result per
    call is its span's ids and what the caller saw.
    """
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("lb-story")
    name, _, mode = sdk.partition("-")
    client = _sdk_client(name, base_url, keepalive_s, sync=mode == "sync")
    calls: list[dict[str, Any]] = []

    def record(index: int, span: Any, error: BaseException | None) -> None:
        trace_id, span_id = _span_ids(span)
        outcome = "ok" if error is None else type(error).__name__
        calls.append(
            {"index": index, "trace_id": trace_id, "span_id": span_id, "outcome": outcome}
        )

    if mode == "sync":
        with client:
            for index, gap in enumerate([0.0, *gaps_s]):
                time.sleep(gap)
                with tracer.start_as_current_span(f"call-{index}") as span:
                    try:
                        _call(name, client)
                        record(index, span, None)
                    except Exception as exc:
                        record(index, span, exc)
        return calls

    async def main() -> None:
        async with client:
            for index, gap in enumerate([0.0, *gaps_s]):
                await asyncio.sleep(gap)
                with tracer.start_as_current_span(f"call-{index}") as span:
                    try:
                        await _call(name, client)
                        record(index, span, None)
                    except Exception as exc:
                        record(index, span, exc)

    asyncio.run(main())
    return calls


def _sdk_client(name: str, base_url: str, keepalive_s: float | None, *, sync: bool) -> Any:
    import httpx2

    sdk: Any = __import__(name)
    kwargs: dict[str, Any] = {}
    if keepalive_s is not None:
        kwargs["limits"] = httpx2.Limits(
            max_connections=1000, max_keepalive_connections=100, keepalive_expiry=keepalive_s
        )
    if sync:
        http_client = sdk.DefaultHttpxClient(**kwargs)
        cls = sdk.OpenAI if name == "openai" else sdk.Anthropic
    else:
        http_client = sdk.DefaultAsyncHttpxClient(**kwargs)
        cls = sdk.AsyncOpenAI if name == "openai" else sdk.AsyncAnthropic
    root = base_url + "/v1" if name == "openai" else base_url
    return cls(api_key="test-key", base_url=root, http_client=http_client)


def _call(name: str, client: Any) -> Any:
    if name == "openai":
        return client.chat.completions.create(
            model="fixture", messages=[{"role": "user", "content": "hi"}]
        )
    return client.messages.create(
        model="fixture", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
