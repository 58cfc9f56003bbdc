"""The capture path's constructors for frozen dataclasses build what the classes' own would."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel._connection import ConnectionFields, new_connection_fields
from seedance_otel._frozen import fast_constructor
from seedance_otel._snapshot import new_snapshot

SNAPSHOT: dict[str, Any] = {
    "kind": FaultKind.CONNECTION_RESET,
    "timestamp_ns": 7,
    "library": "aiohttp",
    "phase": "request",
    "error_type": "ConnectionResetError",
    "error_message": "reset",
    "server_port": 443,
    "alpn_offered": ("h2", "http/1.1"),
}
CONNECTION: dict[str, Any] = {"peer_address": "127.0.0.9", "peer_port": 8443, "reused": True}


@pytest.mark.parametrize(
    ("cls", "build", "values"),
    [
        (ResetContextSnapshot, new_snapshot, SNAPSHOT),
        (ConnectionFields, new_connection_fields, CONNECTION),
    ],
    ids=["snapshot", "connection_fields"],
)
def test_builds_an_equal_frozen_instance_of_the_class(
    cls: type[Any], build: type[Any], values: dict[str, Any]
) -> None:
    assert build is not cls  # the fast form is the one in use on this interpreter
    fast, slow = build(**values), cls(**values)
    assert type(fast) is cls
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)  # every default the same
    assert pickle.loads(pickle.dumps(fast)) == slow
    assert dataclasses.replace(fast, peer_port=1) == dataclasses.replace(slow, peer_port=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.peer_port = 80
    # No field either: refused as on the class's own instances (the exception
    # type varies with the Python version; slots leave no __dict__ to fill).
    with pytest.raises(Exception) as slow_error:
        slow.not_a_field = 1
    with pytest.raises(type(slow_error.value)):
        fast.not_a_field = 1
    assert not hasattr(fast, "not_a_field")


@pytest.mark.parametrize(
    "bad", [{"kind": FaultKind.DNS_TIMEOUT}, {**SNAPSHOT, "bogus": 1}], ids=["missing", "unknown"]
)
def test_a_wrong_argument_is_reported_as_the_class_reports_it(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as fast_error:
        new_snapshot(**bad)
    with pytest.raises(TypeError) as slow_error:
        ResetContextSnapshot(**bad)
    assert str(fast_error.value) == str(slow_error.value)


def test_positional_fields_keep_their_order() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair:
        first: int
        second: str = "b"

    build = fast_constructor(Pair)
    assert build is not Pair
    assert build(1) == Pair(1) and build(1, "c") == Pair(1, "c")
    assert type(build(2, second="d")) is Pair


def test_falls_back_to_the_class_where_the_twin_cannot_stand_in() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    assert fast_constructor(Checked) is Checked  # its own __post_init__ must run

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithDict:  # no slots: no layout to share
        value: int

    assert fast_constructor(WithDict) is WithDict


def test_a_twin_that_cannot_be_built_leaves_the_class_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Plain:
        value: int

    def refuse(*args: object, **kwargs: object) -> type:
        raise TypeError("no twin here")

    monkeypatch.setattr(dataclasses, "make_dataclass", refuse)
    assert fast_constructor(Plain) is Plain  # the package still imports and works
