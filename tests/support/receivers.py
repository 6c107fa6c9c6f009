"""Real receivers of change notifications on 127.0.0.1: a webhook server and moto's SNS/SQS.

``WebhookReceiver`` is a threading ``http.server`` (HTTP/1.1, keep-alive) that records
every request it gets, checks its signature, and answers as its ``answer`` callable
says: ``200``, ``500``, ``404``, ``"hang"`` (hold the request past the sender's
timeout, then answer 200 to nobody), or ``(status, headers)``.

``MotoServer`` is moto in server mode in a thread (SNS, SQS), with the credentials a
client needs in ``env``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from stacwatchd.sinks.notify import SIGNATURE_HEADER, verify

__all__ = ["MotoServer", "Receipt", "WebhookReceiver"]

Answer = int | str | tuple[int, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Receipt:
    """One request as the receiver got it, and how it answered."""

    number: int  # 0-based, in arrival order
    at: float  # time.time() when the body was read
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature header matches the body and the secret
    answer: str  # "ok" (2xx sent), "failed" (another status sent), "hung"

    @property
    def message(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP endpoint on 127.0.0.1 that records what it is sent."""

    def __init__(
        self,
        secret: bytes,
        answer: Callable[[int, dict[str, Any]], Answer] = lambda n, message: 200,
        *,
        hang_seconds: float = 3.0,
    ) -> None:
        self.secret = secret
        self.answer = answer
        self.hang_seconds = hang_seconds
        self.receipts: list[Receipt] = []
        self.connections = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/stac?token=abc"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        signed = verify(body, headers.get(SIGNATURE_HEADER.lower()), self.secret)
        try:
            message = json.loads(body)
        except ValueError:
            message = {}
        with self._lock:
            number = len(self.receipts)
            answer = self.answer(number, message)
            outcome = "hung" if answer == "hang" else "ok" if isinstance(answer, int) and 200 <= answer < 300 else "failed"
            self.receipts.append(Receipt(number, time.time(), headers, body, signed, outcome))
        if answer == "hang":
            time.sleep(self.hang_seconds)
            answer = 200
        status, extra = answer if isinstance(answer, tuple) else (int(answer), {})
        try:
            handler.send_response(status)
            for key, value in extra.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the sender gave up waiting

    # -- what arrived ----------------------------------------------------------------------

    def snapshot(self) -> list[Receipt]:
        with self._lock:
            return list(self.receipts)

    def delivered(self) -> list[dict[str, Any]]:
        """Messages acknowledged with a 2xx, in arrival order."""
        return [r.message for r in self.snapshot() if r.answer == "ok"]

    def delivered_ids(self) -> set[str]:
        return {m["id"] for m in self.delivered()}


class MotoServer:
    """moto in server mode on 127.0.0.1 (a thread of the test process)."""

    env: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-not-real",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> Self:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        ).client(service, endpoint_url=self.endpoint)
