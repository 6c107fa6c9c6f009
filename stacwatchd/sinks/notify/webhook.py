"""Webhooks: one signed ``POST`` per change, in order, on a kept-alive connection.

A 2xx answer is delivery. A 4xx other than 408 and 429 means the receiver refuses this
message: after ``max_attempts`` such answers in a row it is dropped (logged, counted in
the status). Everything else (other codes, timeouts, refused or lost connections) is
retried with the runner's capped backoff, honouring ``Retry-After``; nothing else is
ever dropped. The URL's path and query may hold a token, so only its scheme and host
appear in logs, the status and error messages.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from stacwatchd import __version__
from stacwatchd.config import WebhookSettings
from stacwatchd.sinks.base import Row, SinkError
from stacwatchd.sinks.notify._message import SIGNATURE_HEADER, Composer, Message, sign
from stacwatchd.sinks.notify._target import NotifySink
from stacwatchd.state.store import State

__all__ = ["WebhookSink"]

#: Bytes of an answer's body read at most (a receiver owes us nothing but its status).
_MAX_ANSWER = 64 * 1024


class _Undelivered(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class WebhookSink(NotifySink):
    """POSTs each change it wants to one URL, signed with HMAC-SHA256."""

    def __init__(self, name: str, settings: WebhookSettings, composer: Composer, secret: bytes) -> None:
        super().__init__(name, settings, composer)
        parts = urlsplit(settings.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.netloc = parts.netloc.rpartition("@")[2]
        self.target = f"{parts.scheme}://{self.netloc}"
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = settings.timeout_seconds
        self._secret = secret
        self._conn: http.client.HTTPConnection | None = None
        self._reused = False

    def describe(self) -> str:
        return self.target

    def deliver(self, rows: Sequence[Row], state: State) -> None:
        delivered: int | None = None
        sent = 0
        for change, message in self.messages(rows, state):
            if message is not None:
                try:
                    self._deliver_one(message, state)
                except _Undelivered as failure:
                    raise SinkError(self.name, failure.reason, delivered=delivered, retry_after=failure.retry_after) from None
                sent += 1
            delivered = change.seq
        if sent:
            self.log.debug("notify_delivered", sink=self.name, messages=sent, last_seq=delivered)

    def send_test(self) -> str:
        started = time.monotonic()
        try:
            status = self._deliver_one(self.composer.test_message())
        except _Undelivered as failure:
            raise SinkError(self.name, failure.reason) from None
        finally:
            self.close()
        return f"HTTP {status} in {(time.monotonic() - started) * 1000:.0f} ms"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- one message ------------------------------------------------------------------------

    def _deliver_one(self, message: Message, state: State | None = None) -> int:
        body = message.body()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"stacwatchd/{__version__}",
            "X-Stacwatchd-Id": message.id,
            "X-Stacwatchd-Event": message.event,
            "X-Stacwatchd-Seq": str(message.seq),
            SIGNATURE_HEADER: sign(body, self._secret),
        }
        status, reason, retry_after = self._post(body, headers)
        if 200 <= status < 300:
            return status
        why = f"HTTP {status} {reason}".strip()
        refusal = 400 <= status < 500 and status not in (408, 429)
        if refusal and state is not None and self.give_up(message, why, state):
            return status
        raise _Undelivered(why, _retry_after(retry_after))

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str, str | None]:
        """(status, reason, Retry-After) of one POST; a kept-alive connection the receiver
        closed meanwhile is replaced once."""
        for fresh_try in (False, True):
            reused = self._conn is not None and self._reused
            conn = self._connection()
            try:
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                response.read(_MAX_ANSWER)
                if response.will_close or not response.isclosed():
                    self.close()
                else:
                    self._reused = True
                return response.status, response.reason or "", response.getheader("Retry-After")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if reused and not fresh_try:
                    continue
                raise _Undelivered(f"connection lost: {_describe(exc)}") from None
            except TimeoutError:
                self.close()
                raise _Undelivered(f"no answer within {self.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise _Undelivered(f"cannot reach the receiver: {_describe(exc)}") from None
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._reused = False
        return self._conn


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(exc: BaseException) -> str:
    """An OS or protocol error in words, without the URL."""
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
