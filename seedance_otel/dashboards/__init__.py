"""The Grafana dashboards and provisioning files that ship with seedance-otel.

Someone who ran ``pip install seedance-otel`` has no checkout of this
repository, yet needs the dashboards that read its metrics and events. So the
files live once, at the repository's top level in ``dashboards/`` (where a
Grafana user looks for them, and where ``collector-config/docker-compose.yaml``
mounts them from), and this package reaches them through ``data``, a relative
symlink to that directory. setuptools follows the link when it builds the
wheel, so the installed package holds real copies; reading them through
:mod:`importlib.resources` works the same from a wheel, a zip or an editable
install.

``seedance-otel dashboards export`` and ``install`` (:mod:`.cli`) are built on
these functions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "DATASOURCE_UIDS",
    "dashboard_names",
    "datasource_uids",
    "export",
    "load_dashboard",
    "packaged_files",
    "provisioning_files",
]

DATASOURCE_UIDS: dict[str, str] = {
    "seedance-prometheus": "prometheus",
    "seedance-loki": "loki",
    "seedance-jaeger": "jaeger",
}
"""The fixed data source uids the dashboards and the provisioning share, with their types."""

_PROVISIONING = "provisioning"


def _data() -> Traversable:
    return files(__name__).joinpath("data")


def _walk(node: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        relative = f"{prefix}{child.name}"
        if child.is_dir():
            yield from _walk(child, f"{relative}/")
        elif child.name.endswith((".json", ".yaml")):
            yield relative, child


def packaged_files() -> dict[str, str]:
    """Every dashboard and provisioning file: relative path (``/``-separated) -> text."""
    return {relative: node.read_text(encoding="utf-8") for relative, node in _walk(_data(), "")}


def dashboard_names() -> list[str]:
    """File names of the dashboards (``seedance-overview.json``, ...), sorted."""
    return sorted(name for name in packaged_files() if "/" not in name and name.endswith(".json"))


def load_dashboard(name: str) -> dict[str, Any]:
    """The dashboard model in ``name`` (a file name from :func:`dashboard_names`)."""
    if name not in dashboard_names():
        raise KeyError(f"no packaged dashboard named {name!r}")
    model: dict[str, Any] = json.loads(_data().joinpath(name).read_text(encoding="utf-8"))
    return model


def provisioning_files() -> dict[str, str]:
    """Grafana provisioning files (data sources, dashboard provider): relative path -> text."""
    return {
        relative: text
        for relative, text in packaged_files().items()
        if relative.startswith(f"{_PROVISIONING}/")
    }


def export(directory: Path) -> list[Path]:
    """Write the dashboards and provisioning files under ``directory``; return the paths.

    The layout is the repository's ``dashboards/``: the JSON files at the top,
    ``provisioning/dashboards/`` and ``provisioning/datasources/`` below, ready
    to mount into Grafana. Existing files of the same names are replaced.
    """
    written: list[Path] = []
    for relative, text in packaged_files().items():
        target = directory.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def datasource_uids(model: Any) -> set[str]:
    """Every data source uid a dashboard model refers to (panels, targets, variables)."""
    found: set[str] = set()
    if isinstance(model, dict):
        datasource = model.get("datasource")
        if isinstance(datasource, dict):
            uid = datasource.get("uid")
            if isinstance(uid, str) and not uid.startswith(("-- ", "$")):
                found.add(uid)
        for value in model.values():
            found |= datasource_uids(value)
    elif isinstance(model, list):
        for item in model:
            found |= datasource_uids(item)
    return found
