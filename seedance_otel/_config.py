"""Every ``SEEDANCE_OTEL_*`` setting, its default, and how a bad value is handled.

This module is the only place that reads our environment variables. A value
that does not parse produces one warning naming the variable and the value,
and the default is used: configuration mistakes must never crash the host
application. Standard ``OTEL_*`` variables are read by the OpenTelemetry SDK
itself, not here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["SETTINGS", "Setting", "Settings", "load_settings"]

_logger = logging.getLogger("seedance_otel")

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
EXPORTERS = ("otlp", "console", "jsonl", "none")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One environment variable: its option name, default and documentation."""

    env: str
    option: str
    parse: Callable[[str], Any]
    doc: str

    @property
    def default(self) -> Any:
        """Read from :class:`Settings`, the one place defaults are written."""
        return getattr(_DEFAULTS, self.option)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true/false")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"expected an integer in [{low}, {high}]")
        return value

    return parse


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"expected a number in [{low}, {high}]")
        return value

    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SEEDANCE_OTEL_ENABLED",
        "enabled",
        _parse_bool,
        "Master switch for `import seedance_otel.auto` and `opentelemetry-instrument`; "
        "false turns off patching, SDK set-up and shipping.",
    ),
    Setting(
        "SEEDANCE_OTEL_RING_SIZE",
        "ring_size",
        _int_in(16, 1_048_576),
        "Snapshots held in memory. When the shipper falls behind, the oldest unshipped "
        "snapshot is overwritten and counted as dropped (reason `ring_overwrite`).",
    ),
    Setting(
        "SEEDANCE_OTEL_STRICT",
        "strict",
        _parse_bool,
        "Re-raise internal errors of our own hooks instead of logging them. For our test "
        "suite; never set it in production.",
    ),
    Setting(
        "SEEDANCE_OTEL_CAPTURE_IDLE_CLOSES",
        "capture_idle_closes",
        _parse_bool,
        "Record `peer_closed_idle` snapshots when a peer closes a pooled idle connection "
        "(evidence of its idle timeout; not an error the caller sees).",
    ),
    Setting(
        "SEEDANCE_OTEL_EXPORTER",
        "exporter",
        _one_of(EXPORTERS),
        "Where snapshots go: `otlp` (standard OTEL_EXPORTER_OTLP_* resolution), "
        "`console` (one line each on stderr), `jsonl` (append to SEEDANCE_OTEL_FILE), `none`.",
    ),
    Setting(
        "SEEDANCE_OTEL_FILE",
        "file",
        _text,
        "File the `jsonl` exporter appends to, one snapshot per line.",
    ),
    Setting(
        "SEEDANCE_OTEL_BATCH_SIZE",
        "batch_size",
        _int_in(1, 65_536),
        "Snapshots per export request; a full batch is exported at once.",
    ),
    Setting(
        "SEEDANCE_OTEL_EXPORT_INTERVAL_MS",
        "export_interval_ms",
        _int_in(10, 600_000),
        "Longest time a captured snapshot waits before its batch is exported.",
    ),
    Setting(
        "SEEDANCE_OTEL_SHUTDOWN_TIMEOUT_S",
        "shutdown_timeout_s",
        _float_in(0.0, 300.0),
        "How long interpreter exit and `uninstrument()` wait to flush what is pending.",
    ),
    Setting(
        "SEEDANCE_OTEL_SPAN_EVENTS",
        "span_events",
        _parse_bool,
        "Add a `seedance.connection.fault` event to the span active at the fault.",
    ),
    Setting(
        "SEEDANCE_OTEL_COLLAPSE_PER_S",
        "collapse_per_s",
        _int_in(0, 1_000_000),
        "In a fault storm, full snapshots per second per fault key (server, kind, library, "
        "phase, error type); further identical faults are counted and the count travels on "
        "the key's next snapshot (`seedance.collapsed.count`). 0 records every fault in full.",
    ),
    Setting(
        "SEEDANCE_OTEL_METRICS",
        "metrics",
        _parse_bool,
        "Record seedance.* and semconv connection metrics through the OTel metrics API.",
    ),
)

_BY_OPTION = {s.option: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved configuration: environment first, then ``instrument(**options)``."""

    enabled: bool = True
    ring_size: int = 4096
    strict: bool = False
    capture_idle_closes: bool = True
    exporter: str = "otlp"
    file: str = "seedance-snapshots.jsonl"
    batch_size: int = 512
    export_interval_ms: int = 1000
    shutdown_timeout_s: float = 5.0
    span_events: bool = True
    metrics: bool = True
    collapse_per_s: int = 10

    def with_options(self, options: Mapping[str, Any]) -> Settings:
        """Apply keyword options; unknown names raise ``TypeError`` naming them."""
        unknown = sorted(set(options) - set(_BY_OPTION))
        if unknown:
            raise TypeError(
                f"instrument() got unexpected option(s): {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(_BY_OPTION))}"
            )
        checked: dict[str, Any] = {}
        for name, value in options.items():
            setting = _BY_OPTION[name]
            # Options go through the same parser as the environment, so both
            # accept exactly the same values; but only values of the option's
            # own type: str(None) would be the file name "None".
            raw = _option_text(name, value, setting.default)
            try:
                checked[name] = setting.parse(raw)
            except ValueError as exc:
                raise ValueError(f"instrument({name}={value!r}): {exc}") from None
        return dataclasses.replace(self, **checked)


_DEFAULTS = Settings()


def _option_text(name: str, value: Any, default: Any) -> str:
    """``value`` as the text its parser takes; ``TypeError`` if it has the wrong type."""
    if isinstance(default, bool):
        expected: tuple[type, ...] = (bool,)
    elif isinstance(default, int):
        expected = (int,)
    elif isinstance(default, float):
        expected = (int, float)
    else:
        expected = (str, os.PathLike) if name == "file" else (str,)
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        names = " or ".join("path" if t is os.PathLike else t.__name__ for t in expected)
        raise TypeError(
            f"instrument({name}=...) must be {names}, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        if not isinstance(path, str):
            raise TypeError(f"instrument({name}=...) must be a str path, got bytes {path!r}")
        return path
    return str(value).lower() if isinstance(value, bool) else str(value)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every ``SEEDANCE_OTEL_*`` variable; bad values warn once and use the default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None or raw == "":
            continue
        try:
            values[setting.option] = setting.parse(raw)
        except ValueError as exc:
            _logger.warning(
                "seedance_otel: ignoring %s=%r (%s); using the default %r",
                setting.env,
                raw,
                exc,
                setting.default,
            )
    return Settings(**values)
