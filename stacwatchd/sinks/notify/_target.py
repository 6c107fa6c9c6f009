"""What every notification target shares: its filters, its drops, its secret."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from stacwatchd.config import NotifyTarget, WebhookSettings
from stacwatchd.errors import ConfigError
from stacwatchd.log import get_logger
from stacwatchd.sinks.base import Row, Sink, note_refused, refused_key
from stacwatchd.sinks.notify._message import Composer, Message, iso
from stacwatchd.state.store import Change, State

__all__ = ["NotifySink", "read_secret"]


class NotifySink(Sink):
    """A target fed from the change stream: one message per change it wants, in order.

    A message the target refuses for good (see each target) is retried
    ``max_attempts`` times in a row, then logged, noted for ``status`` and skipped;
    every other failure is retried until it heals.
    """

    stream = "changes"
    batch_size = 200

    def __init__(self, name: str, settings: NotifyTarget, composer: Composer) -> None:
        self.name = name
        self.settings = settings
        self.composer = composer
        self.retry = (settings.retry_initial_seconds, settings.retry_max_seconds)
        self.events = frozenset(settings.events)
        self.collections = frozenset(settings.collections)
        self.max_attempts = settings.max_attempts
        self.log = get_logger()
        self.dropped: int | None = None  # read from the state at the first drop
        self._refusals: tuple[int, int] = (0, 0)  # (seq, consecutive refusals)

    def wants(self, change: Change) -> bool:
        if self.collections and change.collection not in self.collections:
            return False
        return (change.event or "") in self.events

    def messages(self, rows: Iterable[Row], state: State) -> Iterator[tuple[Change, Message | None]]:
        """Each row with its message (None: this target does not want it), composed only
        when it is reached: a target failing on the first message composes no other."""
        for row in rows:
            if isinstance(row, Change):
                yield row, (self.composer.message(row, state) if self.wants(row) else None)

    def give_up(self, message: Message, reason: str, state: State) -> bool:
        """Count one refusal of ``message``; True when it is dropped now: logged, and
        noted in the state as this sink's last refused row (``status`` shows it, with
        how many were dropped so far)."""
        seq, count = self._refusals
        count = count + 1 if seq == message.seq else 1
        self._refusals = (message.seq, count)
        if count < self.max_attempts:
            return False
        if self.dropped is None:
            previous = state.meta(refused_key(self.name))
            self.dropped = int(json.loads(previous).get("dropped", 0)) if previous else 0
        self.dropped += 1
        record = {
            "collection": message.collection, "id": message.item_id or message.event, "at": iso(time.time()),
            "error": reason, "event": message.event, "message_id": message.id, "seq": message.seq,
            "attempts": count, "dropped": self.dropped,
        }  # fmt: skip
        note_refused(state, self.name, record)
        self.log.error(
            "notify_dropped", sink=self.name, target=self.describe(), collection=message.collection,
            item_id=message.item_id, change=message.event, id=message.id, seq=message.seq, reason=reason,
            attempts=count, dropped=self.dropped,
        )  # fmt: skip
        return True

    def send_test(self) -> str:
        """Send a test message now; returns what the target answered, or raises SinkError."""
        raise NotImplementedError


def read_secret(settings: WebhookSettings, where: str) -> bytes:
    """The signing secret, from the environment variable or the file named; ``where``
    names the key in errors. The secret itself never appears in any message."""
    if settings.secret_env:
        value = os.environ.get(settings.secret_env)
        if not value:
            raise ConfigError(None, f"{where}.secret_env: environment variable {settings.secret_env} is not set or empty")
        return value.encode()
    assert settings.secret_file is not None
    path = Path(settings.secret_file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"{where}.secret_file: cannot read: {exc.strerror}") from None
    data = data.rstrip(b"\r\n")
    if not data:
        raise ConfigError(path, f"{where}.secret_file: the file is empty")
    return data
