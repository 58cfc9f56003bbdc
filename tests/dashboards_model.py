"""Read the packaged Grafana dashboards the way Grafana does: panels, queries, variables.

Shared by test_dashboards.py (static checks) and test_prometheus_dashboards.py
(every PromQL query against a real Prometheus). ``interpolate`` follows
Grafana's template rules for the Prometheus and Loki data sources closely
enough to produce the query text Grafana would send: ``$var``, ``${var}``,
``${var:raw}``, ``[[var]]``, the built-in intervals, and multi-value variables
as ``(a|b)`` with each value regex-escaped (and the backslashes doubled, as
they sit inside a PromQL string literal). An unknown variable raises: a panel
that refers to a variable the dashboard does not define is broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seedance_otel import dashboards

PROMETHEUS_UID = "seedance-prometheus"
LOKI_UID = "seedance-loki"

# Values for Grafana's built-in variables in our test queries.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__auto": "1m",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    datasource_uid: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} {self.panel_title!r} query {self.ref_id}"


def load_all() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model, from the installed package (as users get them)."""
    return {name: dashboards.load_dashboard(name) for name in dashboards.dashboard_names()}


def iter_panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside rows (collapsed rows nest them)."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(name: str, model: Mapping[str, Any]) -> list[Query]:
    out = []
    for panel in iter_panels(model):
        for target in panel.get("targets", []):
            datasource = target.get("datasource") or panel.get("datasource") or {}
            out.append(
                Query(
                    dashboard=name,
                    panel_id=panel["id"],
                    panel_title=panel.get("title", ""),
                    ref_id=target.get("refId", "?"),
                    datasource_uid=datasource.get("uid", ""),
                    expr=target.get("expr", ""),
                )
            )
    return out


def variables(model: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in model.get("templating", {}).get("list", [])}


def _regex_escape(value: str) -> str:
    # Grafana doubles the backslash: the value sits in a PromQL/LogQL string literal.
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def interpolate(
    expr: str,
    values: Mapping[str, str | Sequence[str]],
    *,
    multi: Mapping[str, bool] | None = None,
) -> str:
    """``expr`` with variables replaced as Grafana would.

    ``values[name]`` is a string (a single value, or an ``allValue`` such as
    ``.*``, used raw) or a list of selected values. A list is formatted as a
    regex alternation when the variable is multi-value (``multi[name]``).
    """
    multi = multi or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise KeyError(f"query refers to undefined variable ${name}: {expr}")
        value = values[name]
        if isinstance(value, str):
            return value
        if fmt == "raw":
            return "|".join(value)
        if not multi.get(name, False):
            return value[0]
        escaped = [_regex_escape(v) for v in value]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VARIABLE.sub(replace, expr)


_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)


def parse_label_values(query: str) -> tuple[str | None, str]:
    """``label_values(metric{...}, label)`` -> (series selector or None, label)."""
    found = _LABEL_VALUES.match(query)
    if found is None:
        raise ValueError(f"not a label_values() variable query: {query}")
    return found.group("match"), found.group("label")


def apply_variable_regex(regex: str, values: Sequence[str]) -> list[str]:
    """A variable's ``regex`` (``/.../``) applied as Grafana does: keep matches, first group."""
    if not regex:
        return list(values)
    pattern = re.compile(regex.strip("/"))
    out = []
    for value in values:
        found = pattern.search(value)
        if found is not None:
            out.append(found.group(1) if found.groups() else found.group(0))
    return sorted(set(out))
