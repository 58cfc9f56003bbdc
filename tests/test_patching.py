"""Hook installation: exact-signature wrappers, and the generic ones a changed library gets."""

from __future__ import annotations

import pytest

import seedance_otel
from seedance_otel.instrumentation import _httpcore_hooks, aiohttp_client
from seedance_otel.instrumentation._patching import PatchSet, signature_is

from clients import CLIENTS, library_of, run_steps
from faultservers import HttpFaultServer


def test_signature_is():
    def a(self, request): ...
    def b(self, key, protocol, *, should_close=False): ...
    def c(self, *args, **kwargs): ...

    assert signature_is(a, ("self", "request"))
    assert not signature_is(a, ("self",))
    assert signature_is(b, ("self", "key", "protocol"), ("should_close",))
    assert not signature_is(b, ("self", "key", "protocol"))
    assert not signature_is(c, ("self",))
    assert not signature_is(len, ("obj",))  # builtins without a signature are never "exact"


@pytest.fixture
def generic_wrappers(monkeypatch):
    """Instrument as if the libraries' methods had signatures we do not know."""
    monkeypatch.setattr(aiohttp_client, "signature_is", lambda *a, **k: False)
    monkeypatch.setattr(_httpcore_hooks, "signature_is", lambda *a, **k: False)
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True)
    yield
    seedance_otel.uninstrument()


@pytest.mark.parametrize("client", CLIENTS)
def test_generic_wrappers_capture_the_same(generic_wrappers, client):
    import aiohttp.connector

    assert aiohttp.connector.Connection.__init__.__code__.co_name == "generic_init"
    with HttpFaultServer(middlebox_idle_s=0.2) as server:
        results = run_steps(
            client,
            [
                ("GET", server.url("/a")),
                ("sleep", 0.1),
                ("GET", server.url("/b")),
                ("sleep", 0.4),
                ("POST", server.url("/c")),
            ],
        )
    assert results[:2] == [200, 200] and isinstance(results[2], Exception)
    [snap] = [s for s in seedance_otel.snapshots() if s.library == library_of(client)]
    assert snap.connection_reused is True and snap.connection_requests == 2
    assert snap.peer_reuse_ok_count == 1


def test_restore_leaves_a_later_wrapper_in_place():
    class Target:
        def method(self):
            return "original"

    patches = PatchSet("test")
    patches.replace(Target, "method", lambda original: lambda self: "ours:" + original(self))
    ours = Target.__dict__["method"]
    # Another tool replaced us.
    Target.method = lambda self: "someone else"  # type: ignore[method-assign]
    patches.restore()
    assert Target().method() == "someone else"
    assert Target.__dict__["method"] is not ours


def test_add_default_refuses_to_shadow():
    class Target:
        existing = 1

    with pytest.raises(RuntimeError):
        PatchSet("test").add_default(Target, "existing", None)


def test_wrap_calls_the_wrapper_as_wrapt_would():
    """Over a plain method: a plain function, the original bound, the
    arguments as given, the result and the exception passed through."""
    seen = []

    class Target:
        def method(self, a, b=2):
            if a == "boom":
                raise KeyError(a)
            return (self, a, b)

    def wrapper(wrapped, instance, args, kwargs):
        seen.append((wrapped.__func__ is original, instance, args, kwargs))
        return wrapped(*args, **kwargs)

    original = Target.__dict__["method"]
    patches = PatchSet("test")
    patches.wrap(Target, "method", wrapper)
    target = Target()
    hooked = Target.__dict__["method"]
    assert type(hooked).__name__ == "function" and hooked.__wrapped__ is original
    assert target.method(1, b=3) == (target, 1, 3)
    assert Target.method(target, 4) == (target, 4, 2)  # called through the class
    with pytest.raises(KeyError) as raised:
        target.method("boom")
    assert raised.value.args == ("boom",)
    assert seen == [
        (True, target, (1,), {"b": 3}),
        (True, target, (4,), {}),
        (True, target, ("boom",), {}),
    ]
    patches.restore()
    assert Target.__dict__["method"] is original


def test_wrap_keeps_a_coroutine_method_a_coroutine_function():
    import asyncio

    class Target:
        async def method(self, x):
            return x + 1

    PatchSet("test").wrap(Target, "method", lambda w, i, a, k: w(*a, **k))
    assert asyncio.iscoroutinefunction(Target.method)
    assert asyncio.run(Target().method(1)) == 2


def test_wrap_falls_back_to_wrapt_for_other_descriptors():
    import wrapt

    class Target:
        @staticmethod
        def make(x):
            return x * 2

    patches = PatchSet("test")
    patches.wrap(Target, "make", lambda w, i, a, k: w(*a, **k) + 1)
    assert isinstance(Target.__dict__["make"], wrapt.FunctionWrapper)
    assert Target.make(2) == 5 and Target().make(3) == 7
    patches.restore()
    assert Target.make(2) == 4


def test_wrap_module_function_has_no_instance():
    import types

    module = types.ModuleType("target")

    def function(x):
        return x

    module.function = function  # type: ignore[attr-defined]
    seen = []

    def wrapper(wrapped, instance, args, kwargs):
        seen.append((wrapped, instance, args))
        return wrapped(*args, **kwargs)

    patches = PatchSet("test")
    patches.wrap_module_function(module, "function", wrapper)
    assert module.function(5) == 5 and seen == [(function, None, (5,))]
    patches.restore()
    assert module.function is function


def test_wrap_steps_aside_when_told():
    """``step_aside`` true: the original runs with the call's own arguments and
    the wrapper is not called; false: the wrapper runs as usual."""
    import asyncio

    class Target:
        async def fetch(self, x, *, y=0):
            return (self, x, y)

    original = Target.__dict__["fetch"]
    aside = [True]
    seen = []

    def wrapper(wrapped, instance, args, kwargs):
        seen.append((instance, args, kwargs))
        return wrapped(*args, **kwargs)

    patches = PatchSet("test")
    patches.wrap(Target, "fetch", wrapper, step_aside=lambda: aside[0])
    assert asyncio.iscoroutinefunction(Target.fetch)
    target = Target()
    assert asyncio.run(target.fetch(1, y=2)) == (target, 1, 2) and seen == []
    aside[0] = False
    assert asyncio.run(target.fetch(3, y=4)) == (target, 3, 4)
    assert seen == [(target, (3,), {"y": 4})]
    patches.restore()
    assert Target.__dict__["fetch"] is original


def test_wrap_while_enabled_passes_calls_on_while_disabled():
    """``while_enabled``: the wrapper runs only while the set is enabled, for a
    plain method (the flag read in the hook) and a staticmethod (wrapt)."""
    import pytest

    class Target:
        def fetch(self, x, *, y=0):
            return (self, x, y)

        @staticmethod
        def make(x):
            return x * 2

    originals = Target.__dict__["fetch"], Target.__dict__["make"]
    seen = []

    def wrapper(wrapped, instance, args, kwargs):
        seen.append(args)
        return wrapped(*args, **kwargs)

    patches = PatchSet("test")
    patches.wrap(Target, "fetch", wrapper, while_enabled=True)
    patches.wrap(Target, "make", wrapper, while_enabled=True)
    target = Target()
    assert target.fetch(1, y=2) == (target, 1, 2) and Target.make(3) == 6 and seen == []
    patches.enabled = True
    assert target.fetch(4, y=5) == (target, 4, 5) and Target.make(6) == 12
    assert seen == [(4,), (6,)]
    with pytest.raises(ValueError):
        patches.wrap(Target, "fetch", wrapper, step_aside=lambda: False, while_enabled=True)
    patches.restore()
    assert (Target.__dict__["fetch"], Target.__dict__["make"]) == originals


def test_replace_keeps_a_coroutine_method_one():
    """A plain function replacing an ``async def`` still reads as a coroutine
    function to asyncio (libraries and frameworks check)."""
    import asyncio

    class Target:
        async def aclose(self):
            return "closed"

    calls = []

    def factory(original):
        def aclose(self):
            calls.append(self)
            return original(self)

        return aclose

    patches = PatchSet("test")
    patches.replace(Target, "aclose", factory)
    assert asyncio.iscoroutinefunction(Target.aclose)
    target = Target()
    assert asyncio.run(target.aclose()) == "closed" and calls == [target]
    patches.restore()
