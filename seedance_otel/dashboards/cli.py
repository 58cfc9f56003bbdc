"""``seedance-otel dashboards``: export the packaged dashboards, or install them into Grafana.

``export DIR`` writes the dashboards and the provisioning files, for Grafana's
file provisioning (``collector-config/docker-compose.yaml`` mounts the same
files). ``install`` uploads the dashboards through Grafana's HTTP API, for a
Grafana you cannot mount files into:

1. ``GET /api/datasources/uid/:uid`` for each data source the dashboards use.
   A missing one is a warning, not a failure: Grafana stores the dashboard
   anyway and its panels work as soon as a data source with that uid exists
   (``dashboards/provisioning/datasources/seedance.yaml`` creates them).
   ``--require-datasources`` makes it a failure, checked before any upload.
   A 403 here (an Editor's token may not read data sources) skips the check
   with a warning.
2. ``GET /api/folders/:uid``, else ``POST /api/folders`` (on 409, a folder of
   that title exists under another uid: it is looked up and used).
3. ``POST /api/dashboards/db`` with ``overwrite: true`` per dashboard: the
   dashboards keep their uids, so a newer version replaces the older one.

Only the standard library speaks HTTP here (``http.client``): installing
dashboards must not pull an HTTP client into the application's environment.
Every failure is one line on stderr and a non-zero exit; credentials never
appear in messages, never go to another origin (redirects are not followed)
and never sit in the URL. ``--timeout`` bounds each request as a whole.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import os
import re
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from .._redact import redact_url
from .._version import __version__
from . import DATASOURCE_UIDS, dashboard_names, datasource_uids, export, load_dashboard

__all__ = ["GrafanaError", "install", "register", "run"]

DEFAULT_FOLDER = "seedance-otel"
_TIMEOUT_S = 10.0
_MAX_ANSWER_BYTES = 16 * 1024 * 1024
_PROG = "seedance-otel dashboards"


class GrafanaError(Exception):
    """A failure to report as one line; the message never holds credentials."""


def _one_line(text: str, limit: int = 300) -> str:
    collapsed = " ".join(str(text).split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 3] + "..."


def _error(message: str) -> None:
    print(f"{_PROG}: error: {_one_line(message)}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{_PROG}: warning: {_one_line(message)}", file=sys.stderr)


def folder_uid(title: str) -> str:
    """A Grafana folder uid for ``title``: stable, so re-installs find the same folder."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", title.lower()).strip("-")
    return (slug or DEFAULT_FOLDER)[:40]


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _checked_secret(value: str | None, what: str) -> str | None:
    """A credential that can go into a header, or GrafanaError (never echoing it)."""
    if value is None:
        return None
    if _has_control_characters(value) or not value.isascii():
        raise GrafanaError(f"{what} contains a control or non-ASCII character")
    return value


class GrafanaClient:
    """The few Grafana HTTP API calls ``install`` needs, over ``http.client``.

    ``timeout_s`` is a deadline for each request as a whole (connect, send,
    every byte of the answer): a server that trickles its answer cannot hold
    the command past it. Redirects are never followed: credentials must not
    travel to another origin, and a redirected POST would silently turn into
    a GET; a 3xx is reported with the URL to use instead.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        if _has_control_characters(url) or " " in url:
            raise GrafanaError("--grafana-url must not contain spaces or control characters")
        try:
            parsed = urllib.parse.urlsplit(url)
            port = parsed.port
            host = parsed.hostname
        except ValueError as exc:
            raise GrafanaError(
                f"--grafana-url is not a valid URL ({exc}): {redact_url(url)}"
            ) from None
        if parsed.scheme not in ("http", "https") or not host:
            raise GrafanaError(f"--grafana-url must be an http(s) URL, got {redact_url(url)!r}")
        if "@" in parsed.netloc:
            raise GrafanaError(
                "--grafana-url must not contain credentials (user:password@); use "
                "--user/--password or GRAFANA_USER/GRAFANA_PASSWORD"
            )
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise GrafanaError(
                f"the timeout must be a positive number of seconds, got {timeout_s}"
            )
        self.url = url.rstrip("/")
        self._https = parsed.scheme == "https"
        self._host = host
        self._port = port
        self._base_path = parsed.path.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"seedance-otel/{__version__}",
        }
        token = _checked_secret(token, "the token")
        user = _checked_secret(user, "the user name")
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif user is not None:
            if password is not None and _has_control_characters(password):
                raise GrafanaError("the password contains a control character")
            pair = f"{user}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)

    def call(
        self, method: str, path: str, body: Any = None, doing: str = "calling Grafana"
    ) -> tuple[int, Any]:
        """``(status, parsed JSON or None)`` of an answer that is not a redirect.

        GrafanaError when Grafana is unreachable, misses the deadline,
        redirects, or answers 2xx with something that is not JSON (not
        Grafana's API: a proxy's login page, another server).
        """
        data = None
        headers = dict(self._headers)
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        expired = threading.Event()

        def expire() -> None:
            # The deadline: wake whatever read or write is blocked on the socket.
            expired.set()
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self.timeout_s, expire)
        timer.daemon = True
        timer.start()
        try:
            conn.request(method, self._base_path + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read(_MAX_ANSWER_BYTES + 1)
            status, location = response.status, response.getheader("Location")
            content_type = response.getheader("Content-Type") or "no content type"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set():
                raise GrafanaError(
                    f"Grafana at {self.url} did not answer within {self.timeout_s:g} s "
                    f"while {doing}"
                ) from None
            reason = getattr(exc, "reason", None) or exc
            raise GrafanaError(f"cannot reach Grafana at {self.url}: {reason}") from None
        finally:
            timer.cancel()
            conn.close()
        if expired.is_set():
            raise GrafanaError(
                f"Grafana at {self.url} did not answer within {self.timeout_s:g} s while {doing}"
            )
        if len(raw) > _MAX_ANSWER_BYTES:
            raise GrafanaError(f"Grafana's answer while {doing} exceeds {_MAX_ANSWER_BYTES} bytes")
        if 300 <= status < 400:
            target = redact_url(location) if location else "nowhere"
            raise GrafanaError(
                f"Grafana answered {status} (redirect to {target}) while {doing}; redirects "
                "are not followed, so credentials stay with --grafana-url: pass the URL "
                "it redirects to"
            )
        parsed = _json_or_none(raw)
        if 200 <= status < 300 and parsed is None:
            raise GrafanaError(
                f"{self.url} answered {status} with {content_type.split(';')[0]}, not JSON, "
                f"while {doing}: is --grafana-url Grafana's base URL?"
            )
        return status, parsed


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _message(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("status", "message") if body.get(key)]
        if parts:
            return ": ".join(parts)
    return "no details"


def _check_auth(status: int, body: Any, doing: str) -> None:
    if status == 401:
        raise GrafanaError(
            f"Grafana rejected the credentials while {doing} (401 {_message(body)}); "
            "check --token/GRAFANA_TOKEN or --user/--password"
        )
    if status == 403:
        raise GrafanaError(
            f"permission denied while {doing} (403 {_message(body)}); "
            "the token or user needs the Editor role on the folder"
        )


def _unexpected(status: int, body: Any, doing: str) -> GrafanaError:
    return GrafanaError(f"Grafana answered {status} while {doing}: {_message(body)}")


def check_datasources(client: GrafanaClient, uids: set[str], *, required: bool) -> list[str]:
    """The uids Grafana has no data source for (warned about, or raised if ``required``)."""
    missing: list[str] = []
    for uid in sorted(uids):
        doing = f"checking data source {uid!r}"
        status, body = client.call(
            "GET", f"/api/datasources/uid/{urllib.parse.quote(uid)}", doing=doing
        )
        if status == 200:
            continue
        if status == 404:
            missing.append(uid)
            continue
        if status == 403 and not required:
            _warn(f"cannot check data sources (403 {_message(body)}); installing anyway")
            return []
        _check_auth(status, body, doing)
        raise _unexpected(status, body, doing)
    if missing:
        kinds = ", ".join(f"{uid} ({DATASOURCE_UIDS.get(uid, 'unknown type')})" for uid in missing)
        advice = (
            "add data sources with these uids "
            "(dashboards/provisioning/datasources/seedance.yaml does)"
        )
        if required:
            raise GrafanaError(f"Grafana has no data source with uid {kinds}; {advice}")
        _warn(
            f"Grafana has no data source with uid {kinds}: the panels using them show "
            f"'data source not found' until you {advice}"
        )
    return missing


def ensure_folder(client: GrafanaClient, title: str) -> str:
    """The uid of the folder named ``title``, created if needed."""
    uid = folder_uid(title)
    doing = f"looking up folder {uid!r}"
    status, body = client.call("GET", f"/api/folders/{urllib.parse.quote(uid)}", doing=doing)
    if status == 200:
        return uid
    if status != 404:
        _check_auth(status, body, doing)
        raise _unexpected(status, body, doing)
    doing = f"creating folder {title!r}"
    status, body = client.call("POST", "/api/folders", {"uid": uid, "title": title}, doing)
    if status == 200:
        return str(body.get("uid", uid)) if isinstance(body, dict) else uid
    if status == 409:  # a folder with this title exists under another uid
        status, listing = client.call("GET", "/api/folders?limit=1000", doing=doing)
        if status == 200 and isinstance(listing, list):
            for folder in listing:
                if isinstance(folder, dict) and folder.get("title") == title:
                    return str(folder["uid"])
        raise GrafanaError(f"folder {title!r} exists (409) but could not be found by title")
    _check_auth(status, body, doing)
    raise _unexpected(status, body, doing)


def upload_dashboard(client: GrafanaClient, model: dict[str, Any], folder: str) -> str:
    """Create or replace the dashboard (by uid); returns its URL."""
    dashboard = dict(model)
    dashboard["id"] = None  # ids are per Grafana instance; the uid identifies it
    dashboard.pop("version", None)
    payload = {
        "dashboard": dashboard,
        "folderUid": folder,
        "overwrite": True,
        "message": f"seedance-otel {__version__}",
    }
    title = str(model.get("title", model.get("uid")))
    doing = f"saving dashboard {title!r}"
    status, body = client.call("POST", "/api/dashboards/db", payload, doing)
    if status == 200:
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise GrafanaError(f"Grafana answered 200 without a dashboard URL while {doing}")
        return client.url + url if url.startswith("/") else url
    if status == 412:
        raise GrafanaError(
            f"Grafana refused dashboard {title!r} (412 {_message(body)}); a dashboard "
            "with the same title and another uid may exist in that folder (rename or "
            "delete it, or pass --folder), or the dashboard belongs to a plugin"
        )
    _check_auth(status, body, doing)
    raise _unexpected(status, body, doing)


def install(
    client: GrafanaClient, *, folder_title: str = DEFAULT_FOLDER, require_datasources: bool = False
) -> list[str]:
    """Check data sources, make the folder, upload every packaged dashboard; their URLs."""
    models = [load_dashboard(name) for name in dashboard_names()]
    uids: set[str] = set()
    for model in models:
        uids |= datasource_uids(model)
    check_datasources(client, uids, required=require_datasources)
    folder = ensure_folder(client, folder_title)
    return [upload_dashboard(client, model, folder) for model in models]


# -- argparse ------------------------------------------------------------------


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dashboards`` command to ``subparsers`` (of ``seedance-otel``'s parser)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dashboards",
        help="export the Grafana dashboards, or install them into a Grafana",
        description="The Grafana dashboards that ship with seedance-otel.",
    )
    actions = parser.add_subparsers(dest="dashboards_command", metavar="ACTION")
    parser.set_defaults(func=run, dashboards_parser=parser)

    export_parser = actions.add_parser(
        "export",
        help="write the dashboards and Grafana provisioning files to a directory",
        description="Write the dashboard JSON files and the Grafana provisioning files "
        "(data sources with fixed uids, dashboard provider) to DIR.",
    )
    export_parser.add_argument("directory", metavar="DIR", type=Path)

    install_parser = actions.add_parser(
        "install",
        help="upload the dashboards through Grafana's HTTP API",
        description="Upload the dashboards to Grafana, replacing older versions (same uids). "
        "Credentials: a service account token (--token or GRAFANA_TOKEN, preferred) or "
        "--user/--password (GRAFANA_USER/GRAFANA_PASSWORD). Prefer the environment "
        "variables: arguments are visible to other users of the machine.",
    )
    install_parser.add_argument(
        "--grafana-url",
        default=os.environ.get("GRAFANA_URL"),
        help="Grafana's base URL, e.g. http://127.0.0.1:3000 (env GRAFANA_URL)",
    )
    install_parser.add_argument(
        "--token", default=None, help="service account token (env GRAFANA_TOKEN)"
    )
    install_parser.add_argument("--user", default=None, help="basic auth user (env GRAFANA_USER)")
    install_parser.add_argument(
        "--password", default=None, help="basic auth password (env GRAFANA_PASSWORD)"
    )
    install_parser.add_argument(
        "--folder",
        default=DEFAULT_FOLDER,
        help=f"folder title to install into, created if missing (default {DEFAULT_FOLDER})",
    )
    install_parser.add_argument(
        "--require-datasources",
        action="store_true",
        help="fail, before uploading anything, if Grafana lacks a data source the "
        "dashboards use (default: warn and install)",
    )
    install_parser.add_argument(
        "--timeout",
        default=str(_TIMEOUT_S),
        help="deadline in seconds for each HTTP request, answer included (default 10)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``seedance-otel dashboards``: 0 on success, 1 on failure, 2 on bad usage."""
    command = getattr(args, "dashboards_command", None)
    if command == "export":
        return _run_export(args.directory)
    if command == "install":
        return _run_install(args)
    parser = getattr(args, "dashboards_parser", None)
    if parser is not None:
        parser.print_help(sys.stderr)
    return 2


def _run_export(directory: Path) -> int:
    try:
        written = export(directory)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        _error(f"cannot write to {str(directory)!r}: {reason}")
        return 1
    for path in written:
        print(path)
    return 0


def _run_install(args: argparse.Namespace) -> int:
    url = args.grafana_url
    if not url:
        _error("no Grafana URL: pass --grafana-url or set GRAFANA_URL")
        return 2
    token = args.token if args.token is not None else os.environ.get("GRAFANA_TOKEN")
    user = args.user if args.user is not None else os.environ.get("GRAFANA_USER")
    password = args.password if args.password is not None else os.environ.get("GRAFANA_PASSWORD")
    if args.token is not None and args.user is not None:
        _error("pass either --token or --user/--password, not both")
        return 2
    if token and args.user is not None:
        token = None  # an explicit --user wins over GRAFANA_TOKEN from the environment
    try:
        timeout_s = float(args.timeout)
    except ValueError:
        timeout_s = math.nan
    if not (math.isfinite(timeout_s) and 0 < timeout_s <= 3600):
        _error(f"--timeout must be a number of seconds in (0, 3600], got {args.timeout!r}")
        return 2
    try:
        client = GrafanaClient(url, token=token, user=user, password=password, timeout_s=timeout_s)
        urls = install(
            client, folder_title=args.folder, require_datasources=args.require_datasources
        )
    except GrafanaError as exc:
        _error(str(exc))
        return 1
    for dashboard_url in urls:
        print(dashboard_url)
    return 0
