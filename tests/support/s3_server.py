"""A real S3 API server on loopback for the tests: moto's server, made durable.

moto keeps objects in memory; a real store keeps what it acknowledged across a
restart. This wrapper gives moto that property: every acknowledged change (bucket
settings, an object's final bytes and headers, a deletion) is appended to a journal
*before* the response leaves, and a restarted server replays the journal before it
listens. Every request is also logged (method, key, status) so tests can count what
reached the server.

Run as a script: ``python s3_server.py --port P --journal J --requests R``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

_KEEP_HEADERS = ("Content-Type", "Cache-Control")


class DurableS3:
    """WSGI middleware: journal acknowledged changes, log every request."""

    def __init__(self, app: Any, journal: str, requests: str) -> None:
        from werkzeug.test import Client

        self.app = app
        self.client = Client(app)
        self.journal = journal
        self.requests = os.open(requests, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()

    def replay(self) -> int:
        if not os.path.exists(self.journal):
            return 0
        count = 0
        with open(self.journal, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill: never acknowledged
                self._apply(entry)
                count += 1
        return count

    def _apply(self, entry: dict[str, Any]) -> None:
        body = base64.b64decode(entry.get("body", ""))
        self.client.open(
            entry["path"],
            method=entry["method"],
            query_string=entry.get("query", ""),
            headers=entry.get("headers", {}),
            data=body,
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" and not length:
            body = environ["wsgi.input"].read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split()[0])
            captured["start"] = (status, headers, exc_info)
            return lambda data: None

        chunks = list(self.app(environ, capture))
        status = captured["status"]
        if 200 <= status < 300 and method in ("PUT", "POST", "DELETE"):
            self._journal(method, path, query, environ, body)
        os.write(self.requests, f"{method} {unquote(path)}{'?' + query if query else ''} {status}\n".encode())
        start_response(*captured["start"][:2])
        return chunks

    def _journal(self, method: str, path: str, query: str, environ: dict[str, Any], body: bytes) -> None:
        """Append what replays an acknowledged change (multipart parts are not one)."""
        segments = path.lstrip("/").split("/", 1)
        is_object = len(segments) == 2 and segments[1] != ""
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if is_object and ("partNumber" in params or (method == "POST" and "uploads" in params)):
            return  # parts of a multipart upload: durable only once completed
        if is_object and method == "DELETE" and "uploadId" in params:
            return
        if is_object and method in ("PUT", "POST"):
            entry = self._object_state(path)
        else:
            headers = {
                k[5:].replace("_", "-").title(): v for k, v in environ.items()
                if k.startswith("HTTP_") and k not in ("HTTP_HOST", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING")
            }  # fmt: skip
            if environ.get("CONTENT_TYPE"):
                headers["Content-Type"] = environ["CONTENT_TYPE"]
            entry = {"method": method, "path": path, "query": query, "headers": headers, "body": base64.b64encode(body).decode()}
        line = (json.dumps(entry) + "\n").encode()
        with self.lock:
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def _object_state(self, path: str) -> dict[str, Any]:
        """The object as it is now, as one plain PUT (covers completed multipart uploads)."""
        response = self.client.get(path, headers={"Authorization": _SIGNED})
        headers = {k: v for k, v in response.headers.items() if k in _KEEP_HEADERS}
        headers["Authorization"] = _SIGNED
        return {
            "method": "PUT",
            "path": path,
            "query": "",
            "headers": headers,
            "body": base64.b64encode(response.get_data()).decode(),
        }


# A syntactically valid SigV4 header: moto routes by its credential scope (never checked).
_SIGNED = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--requests", required=True)
    args = parser.parse_args()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DurableS3(DomainDispatcherApplication(create_backend_app), args.journal, args.requests)
    replayed = app.replay()
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(json.dumps({"listening": args.port, "replayed": replayed}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
