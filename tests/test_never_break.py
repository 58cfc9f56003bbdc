"""Our failures never become the application's failures; the user's exception is theirs."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Sequence

import pytest

import seedance_otel
from seedance_otel import _capture, _connection, _guard

from clients import CLIENTS, run_steps
from faultservers import Action, HttpFaultServer


def _frames(exc: BaseException) -> list[tuple[str, str]]:
    return [(f.filename, f.name) for f in traceback.extract_tb(exc.__traceback__)]


def _chain_types(exc: BaseException) -> list[str]:
    out = []
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        out.append(type(current).__qualname__)
        current = current.__cause__ or current.__context__
        seen += 1
    return out


def _is_subsequence(small: Sequence[object], big: Sequence[object]) -> bool:
    it = iter(big)
    return all(item in it for item in small)


@pytest.fixture
def lenient():
    """Instrumented with strict mode off: internal errors are logged, not raised."""
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=False)
    yield
    seedance_otel.uninstrument()
    _guard.set_strict(True)


@pytest.mark.parametrize("client", CLIENTS)
def test_failing_capture_leaves_user_exception_untouched(lenient, monkeypatch, caplog, client):
    def broken(*args, **kwargs):
        raise RuntimeError("bug in seedance_otel")

    with HttpFaultServer(lambda info: Action.RST) as server:
        # Reference: the same fault with no instrumentation at all.
        seedance_otel.uninstrument()
        [reference] = run_steps(client, [("POST", server.url("/x"))])
        seedance_otel.instrument(exporter="none", strict=False)
        monkeypatch.setattr(_capture, "classify", broken)
        before = seedance_otel.stats()["internal_errors"]
        with caplog.at_level(logging.ERROR, logger="seedance_otel"):
            [observed] = run_steps(client, [("POST", server.url("/x"))])
    assert type(observed) is type(reference)
    assert observed.args == reference.args
    assert str(observed) == str(reference)
    assert _chain_types(observed) == _chain_types(reference)
    # Every frame of the original traceback is still there, in order; anything
    # added comes from our wrappers only.
    ref_frames, obs_frames = _frames(reference), _frames(observed)
    assert _is_subsequence(ref_frames, obs_frames)
    extra = [f for f in obs_frames if f not in ref_frames]
    assert all("seedance_otel" in filename for filename, _ in extra), extra
    assert seedance_otel.stats()["internal_errors"] > before
    assert seedance_otel.snapshots() == []
    assert any("internal error" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("client", CLIENTS)
def test_failing_happy_path_hook_does_not_fail_requests(lenient, monkeypatch, client):
    def broken(self, *args, **kwargs):
        raise RuntimeError("bug in seedance_otel")

    monkeypatch.setattr(_connection.ConnectionHistory, "begin_request", broken)
    monkeypatch.setattr(_connection.ConnectionHistory, "end_request_ok", broken)
    with HttpFaultServer() as server:
        results = run_steps(client, [("GET", server.url("/a")), ("GET", server.url("/b"))])
    assert results == [200, 200]
    assert seedance_otel.stats()["internal_errors"] >= 2


def test_internal_errors_are_logged_once_per_hook(lenient, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("bug in seedance_otel")

    monkeypatch.setattr(_capture, "classify", broken)
    with HttpFaultServer(lambda info: Action.RST) as server:
        with caplog.at_level(logging.ERROR, logger="seedance_otel"):
            run_steps("httpx-sync", [("POST", server.url("/a")), ("POST", server.url("/b"))])
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 1
    assert seedance_otel.stats()["internal_errors"] >= 2


def test_strict_mode_reraises_internal_errors(instrumented, monkeypatch):
    """SEEDANCE_OTEL_STRICT=1 (our test suite) lets no internal error hide."""

    def broken(*args, **kwargs):
        raise RuntimeError("bug in seedance_otel")

    monkeypatch.setattr(_capture, "classify", broken)
    with HttpFaultServer(lambda info: Action.RST) as server:
        [observed] = run_steps("httpx-sync", [("POST", server.url("/a"))])
    assert isinstance(observed, RuntimeError)
    assert str(observed) == "bug in seedance_otel"


@pytest.mark.parametrize("client", ["aiohttp", "httpx-async"])
def test_cancellation_passes_untouched_and_is_not_a_fault(instrumented, client):
    import aiohttp
    import httpx

    async def scenario(url: str) -> BaseException | None:
        if client == "aiohttp":
            session = aiohttp.ClientSession()
            close = session.close

            async def call() -> None:
                async with session.post(url, data=b"x") as resp:
                    await resp.read()
        else:
            httpx_client = httpx.AsyncClient()
            close = httpx_client.aclose

            async def call() -> None:
                await httpx_client.post(url, content=b"x")

        task = asyncio.ensure_future(call())
        await asyncio.sleep(0.3)
        task.cancel()
        try:
            await task
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            return exc
        finally:
            await close()
        return None

    with HttpFaultServer(lambda info: Action.HANG) as server:
        exc = asyncio.run(scenario(server.url("/slow")))
    assert type(exc) is asyncio.CancelledError
    assert seedance_otel.snapshots() == []


@pytest.mark.parametrize("client", CLIENTS)
def test_requests_made_while_the_app_handles_its_own_error_are_not_faults(instrumented, client):
    """A fallback request inside ``except`` sees that exception in sys.exc_info():
    it is the application's, not this connection's."""
    import aiohttp
    import httpx

    async def aiohttp_fallback(url: str) -> list[int]:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for close_early in (False, False, True):
                try:
                    raise ConnectionResetError(104, "the application's own reset")
                except ConnectionResetError:
                    resp = await session.get(url)
                    statuses.append(resp.status)
                    if close_early:
                        resp.close()  # aiohttp closes the connection: should_close=True
                    else:
                        await resp.read()
            return statuses

    async def httpx_async_fallback(url: str) -> list[int]:
        async with httpx.AsyncClient() as c:
            statuses = []
            for _ in range(2):
                try:
                    raise ConnectionResetError(104, "the application's own reset")
                except ConnectionResetError:
                    statuses.append((await c.get(url)).status_code)
            return statuses

    def httpx_sync_fallback(url: str) -> list[int]:
        with httpx.Client() as c:
            statuses = []
            for _ in range(2):
                try:
                    raise ConnectionResetError(104, "the application's own reset")
                except ConnectionResetError:
                    statuses.append(c.get(url).status_code)
            return statuses

    # A body large enough that closing early really closes a busy connection.
    with HttpFaultServer(body=b"x" * 4_000_000) as server:
        url = server.url("/fallback")
        if client == "aiohttp":
            statuses = asyncio.run(aiohttp_fallback(url))
        elif client == "httpx-async":
            statuses = asyncio.run(httpx_async_fallback(url))
        else:
            statuses = httpx_sync_fallback(url)
        connections = server.connections
    assert set(statuses) == {200}
    assert seedance_otel.snapshots() == []
    assert connections == 1
    peer = seedance_otel.peer_stats()[("127.0.0.1", server.port)]
    assert peer["reuse_ok_count"] >= 1
