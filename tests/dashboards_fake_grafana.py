"""A small stand-in for Grafana's HTTP API, on 127.0.0.1, for ``dashboards install`` tests.

It implements the calls ``install`` makes, as Grafana documents them
(developers/http_api: folder.md, dashboard.md, data_source.md): status codes,
response bodies, and the request shapes it accepts. Requests that Grafana
would reject for their shape (no JSON content type, a dashboard without uid,
``overwrite`` missing) are answered 400 and recorded in ``problems``, so a
test can assert that the client spoke the API correctly. Knobs make it answer
the failure paths: wrong credentials (401), an Editor's 403 on data sources,
a 412 on save, a folder title taken under another uid (409).

Runs on a daemon thread; ``stop()`` (or the ``with`` block) shuts it down.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "glsa_test_token"
USER, PASSWORD = "admin", "s3cret-pass"


class FakeGrafana:
    def __init__(self, datasources: set[str] | None = None) -> None:
        self.datasources = set(datasources or ())
        self.folders: dict[str, str] = {}  # uid -> title
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"model", "folderUid", "version"}
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.save_status: tuple[int, dict[str, Any]] | None = None  # force an answer to saves
        self.datasource_status: int | None = None  # force an answer to data source reads
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def calls(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]

    # -- the API -------------------------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if header == f"Bearer {TOKEN}":
            return True
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return header == f"Basic {expected}"

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "auth": headers.get("authorization"),
                    "body": body,
                }
            )
            if not self._authorized(headers.get("authorization")):
                return 401, {"message": "Unauthorized"}
            if method == "POST" and "application/json" not in headers.get("content-type", ""):
                self.problems.append(f"{method} {path} without a JSON content type")
                return 400, {"message": "bad request data"}
            found = re.fullmatch(r"/api/datasources/uid/([\w.-]+)", path)
            if method == "GET" and found:
                if self.datasource_status is not None:
                    return self.datasource_status, {
                        "message": "Permissions needed: datasources:read"
                    }
                if found.group(1) in self.datasources:
                    return 200, {"uid": found.group(1), "name": found.group(1), "type": "x"}
                return 404, {"message": "Data source not found"}
            if method == "GET" and path.startswith("/api/folders?"):
                return 200, [
                    {"id": i, "uid": u, "title": t}
                    for i, (u, t) in enumerate(self.folders.items())
                ]
            found = re.fullmatch(r"/api/folders/([\w-]+)", path)
            if method == "GET" and found:
                uid = found.group(1)
                if uid in self.folders:
                    return 200, {"id": 1, "uid": uid, "title": self.folders[uid], "version": 1}
                return 404, {"message": "folder not found", "status": "not-found"}
            if method == "POST" and path == "/api/folders":
                return self._create_folder(body)
            if method == "POST" and path == "/api/dashboards/db":
                return self._save_dashboard(body)
            self.problems.append(f"unexpected call {method} {path}")
            return 404, {"message": "Not found"}

    def _create_folder(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("title") or len(body.get("uid", "")) > 40:
            self.problems.append(f"bad folder body {body!r}")
            return 400, {"message": "bad request data"}
        if body["title"] in self.folders.values():
            return 409, {"message": "a folder with the same name already exists"}
        uid = body.get("uid") or "generated-uid"
        self.folders[uid] = body["title"]
        return 200, {"id": len(self.folders), "uid": uid, "title": body["title"], "version": 1}

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("dashboard"), dict)
            or not body["dashboard"].get("uid")
            or not body["dashboard"].get("title")
            or body["dashboard"].get("id") is not None
            or body.get("overwrite") is not True
            or not isinstance(body.get("folderUid"), str)
        ):
            self.problems.append(f"bad dashboard body {str(body)[:200]}")
            return 400, {"message": "bad request data"}
        if self.save_status is not None:
            return self.save_status
        if body["folderUid"] not in self.folders:
            return 400, {"message": "folder not found"}
        model = body["dashboard"]
        uid = model["uid"]
        version = self.dashboards.get(uid, {}).get("version", 0) + 1
        self.dashboards[uid] = {"model": model, "folderUid": body["folderUid"], "version": version}
        slug = re.sub(r"[^a-z0-9]+", "-", model["title"].lower()).strip("-")
        return 200, {
            "id": len(self.dashboards),
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                    grafana.problems.append(f"{method} {self.path}: body is not JSON")
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = grafana.handle(method, self.path, headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
