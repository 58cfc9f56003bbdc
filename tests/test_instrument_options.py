"""``instrument()`` rejects option values of the wrong type instead of stringifying them."""

from __future__ import annotations

from pathlib import Path

import pytest

import seedance_otel
from seedance_otel._config import Settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exporter", None),
        ("exporter", 1),
        ("file", None),
        ("file", 123),
        ("file", b"x"),
        ("ring_size", "4096"),
        ("ring_size", 4096.0),
        ("ring_size", True),
        ("batch_size", None),
        ("strict", "yes"),
        ("strict", 1),
        ("span_events", None),
        ("shutdown_timeout_s", "5"),
        ("shutdown_timeout_s", False),
    ],
)
def test_a_value_of_the_wrong_type_is_a_type_error_naming_the_option(name, value):
    with pytest.raises(
        TypeError, match=rf"instrument\({name}=\.\.\.\) must be .*got {type(value).__name__}"
    ):
        Settings().with_options({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [("exporter", "kafka"), ("ring_size", 3), ("file", " "), ("shutdown_timeout_s", -1.0)],
)
def test_a_value_of_the_right_type_out_of_range_is_a_value_error(name, value):
    with pytest.raises(ValueError, match=rf"instrument\({name}="):
        Settings().with_options({name: value})


def test_good_values_of_every_type_are_taken(tmp_path: Path):
    settings = Settings().with_options(
        {
            "exporter": "JSONL",
            "file": tmp_path / "out.jsonl",
            "ring_size": 64,
            "strict": True,
            "shutdown_timeout_s": 2,
            "export_interval_ms": 50,
        }
    )
    assert settings.exporter == "jsonl"
    assert settings.file == str(tmp_path / "out.jsonl")
    assert (settings.ring_size, settings.strict, settings.shutdown_timeout_s) == (64, True, 2.0)


def test_instrument_raises_and_stays_uninstrumented():
    seedance_otel.uninstrument()
    with pytest.raises(TypeError):
        seedance_otel.instrument(exporter=None)
    from seedance_otel import _runtime

    assert _runtime.RUNTIME is None
