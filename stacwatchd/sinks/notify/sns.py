"""SNS topics: the STAC Item JSON as the message, with attributes listeners filter on.

The best practice for keeping catalogs in sync through SNS: the message body is the
Item JSON, and message attributes carry what a subscription's filter policy needs
(``event``, ``collection``, ``item_id``, ``datetime``, ``bbox`` as a ``String.Array``).
A message over SNS's 256 KB limit carries a link to the Item instead (attribute
``content`` = ``link``). Messages go out up to ten per ``PublishBatch`` call, in order;
on a FIFO topic the collection is the message group and the message id the
deduplication id. An invalid-parameter refusal of one message is retried
``max_attempts`` times, then the message is dropped (logged, counted); every other
failure (throttling, credentials, a missing topic, the network) is retried until it
heals. Credentials come from boto3's usual chain (environment, profile, instance role).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stacwatchd.config import SnsSettings
from stacwatchd.sinks.base import Row, SinkError
from stacwatchd.sinks.notify._message import Composer, Message
from stacwatchd.sinks.notify._target import NotifySink
from stacwatchd.stac.json import dumps
from stacwatchd.state.store import Change, State

__all__ = ["MAX_MESSAGE_BYTES", "SnsSink"]

#: SNS's limit on one message (body and attributes together), and on one batch call.
MAX_MESSAGE_BYTES = 262_144
_MAX_BATCH = 10
#: Refusals that are about one message, not about the topic or the credentials.
_REFUSALS = frozenset({"InvalidParameter", "InvalidParameterValue", "ParameterValueInvalid", "InvalidMessage"})


class SnsSink(NotifySink):
    """Publishes each change it wants to one SNS topic."""

    def __init__(self, name: str, settings: SnsSettings, composer: Composer) -> None:
        super().__init__(name, settings, composer)
        self.topic_arn = settings.topic_arn
        self.fifo = settings.topic_arn.endswith(".fifo")
        self.region = settings.topic_region
        self.endpoint = settings.endpoint
        self.timeout = settings.timeout_seconds
        self._client: Any = None

    def describe(self) -> str:
        return self.topic_arn if self.endpoint is None else f"{self.topic_arn} at {self.endpoint}"

    def deliver(self, rows: Sequence[Row], state: State) -> None:
        delivered: int | None = None
        group: list[tuple[Change, dict[str, Any] | None, Message | None]] = []
        size = 0
        for change, message in self.messages(rows, state):
            entry = self._entry(message) if message is not None else None
            cost = _entry_bytes(entry) if entry is not None else 0
            entries = sum(1 for _, e, _ in group if e is not None)
            if entry is not None and (entries == _MAX_BATCH or size + cost > MAX_MESSAGE_BYTES):
                delivered = self._publish(group, delivered, state)
                group, size = [], 0
            group.append((change, entry, message))
            size += cost
        if group:
            delivered = self._publish(group, delivered, state)

    def send_test(self) -> str:
        started = time.monotonic()
        message = self.composer.test_message()
        try:
            answer = self._sns().publish(**self._entry(message, single=True))
        except (ClientError, BotoCoreError) as exc:
            raise SinkError(self.name, _describe(exc)) from None
        return f"MessageId {answer.get('MessageId')} in {(time.monotonic() - started) * 1000:.0f} ms"

    def close(self) -> None:
        self._client = None

    # -- publishing -------------------------------------------------------------------------

    def _publish(
        self, group: list[tuple[Change, dict[str, Any] | None, Message | None]], delivered: int | None, state: State
    ) -> int | None:
        """Publish one batch; returns the seq delivered up to, or raises SinkError."""
        entries = [entry for _, entry, _ in group if entry is not None]
        failed: dict[str, dict[str, Any]] = {}
        if entries:
            try:
                answer = self._sns().publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise SinkError(self.name, _describe(exc), delivered=delivered) from None
            failed = {f["Id"]: f for f in answer.get("Failed") or []}
        for change, entry, message in group:
            if entry is not None and message is not None and entry["Id"] in failed:
                failure = failed[entry["Id"]]
                why = f"{failure.get('Code')}: {failure.get('Message') or ''}".strip()
                refused = failure.get("SenderFault") and failure.get("Code") in _REFUSALS
                if not (refused and self.give_up(message, why, state)):
                    raise SinkError(self.name, why, delivered=delivered)
            delivered = change.seq
        if entries:
            self.log.debug("notify_delivered", sink=self.name, messages=len(entries), last_seq=delivered)
        return delivered

    def _entry(self, message: Message, *, single: bool = False) -> dict[str, Any]:
        """A PublishBatch entry (or, ``single``, Publish arguments) for one message."""
        attributes = _attributes(message)
        body, content = _body(message)
        attributes["content"] = _string(content)
        if len(body) + _attributes_bytes(attributes) > MAX_MESSAGE_BYTES and message.item_json is not None:
            body = dumps({"id": message.item_id, "collection": message.collection, "event": message.event,
                          "links": [{"rel": "item", "href": message.href, "type": "application/geo+json"}]})  # fmt: skip
            attributes["content"] = _string("link")
        entry: dict[str, Any] = {"Message": body.decode(), "MessageAttributes": attributes}
        if single:
            entry["TopicArn"] = self.topic_arn
        else:
            entry["Id"] = f"m{message.seq}"
        if self.fifo:
            entry["MessageGroupId"] = message.collection or "stacwatchd"
            entry["MessageDeduplicationId"] = message.id
        return entry

    def _sns(self) -> Any:
        if self._client is None:
            config = Config(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"mode": "standard", "total_max_attempts": 2},
                user_agent_extra="stacwatchd",
            )
            try:
                self._client = boto3.session.Session().client(
                    "sns", region_name=self.region, endpoint_url=self.endpoint, config=config
                )
            except BotoCoreError as exc:
                raise SinkError(self.name, _describe(exc)) from None
        return self._client


def _body(message: Message) -> tuple[bytes, str]:
    """The message body and what it holds: the Item, the collection, or a reference."""
    if message.item_json is not None:
        return message.item_json.rstrip(b"\n"), "item"
    if message.collection_document is not None:
        return dumps(message.collection_document), "collection"
    return dumps({k: v for k, v in message.payload().items() if v is not None}), "reference"


def _attributes(message: Message) -> dict[str, dict[str, str]]:
    attributes = {
        "id": _string(message.id),
        "seq": {"DataType": "Number", "StringValue": str(message.seq)},
        "event": _string(message.event),
    }
    if message.collection:
        attributes["collection"] = _string(message.collection)
    if message.item_id:
        attributes["item_id"] = _string(message.item_id)
    if message.datetime:
        attributes["datetime"] = _string(message.datetime)
    if message.bbox:
        attributes["bbox"] = {"DataType": "String.Array", "StringValue": json.dumps(message.bbox)}
    return attributes


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _attributes_bytes(attributes: dict[str, dict[str, str]]) -> int:
    return sum(len(k.encode()) + len(v["DataType"]) + len(v["StringValue"].encode()) for k, v in attributes.items())


def _entry_bytes(entry: dict[str, Any]) -> int:
    return len(entry["Message"].encode()) + _attributes_bytes(entry["MessageAttributes"])


def _describe(exc: BaseException) -> str:
    """A boto error in words (never credentials: botocore does not put them in messages)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
