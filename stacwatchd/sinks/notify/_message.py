"""One notification per change: its stable id, its payload, its signature.

The id is the dedupe key a listener keys on: a UUID derived from the state file's
identity and the change's ``seq`` (its sequence number in this catalog), so every
retry, every restart and every target announce the same change under the same id.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from stacwatchd.config import CatalogSettings, CollectionSettings
from stacwatchd.stac.hrefs import PublishedUrls, item_parts
from stacwatchd.stac.json import dumps, loads
from stacwatchd.stac.layout import Layout
from stacwatchd.stac.render import Renderer
from stacwatchd.stac.summaries import DEFAULT_SUMMARIES
from stacwatchd.state.store import Change, State

__all__ = ["SIGNATURE_HEADER", "TEST_EVENT", "Composer", "Message", "iso", "sign", "verify"]

SIGNATURE_HEADER = "X-Stacwatchd-Signature"
#: The event of ``stacwatchd notify test``; never sent for a catalog change.
TEST_EVENT = "notify.test"


def sign(body: bytes, secret: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, secret: bytes) -> bool:
    """Whether ``signature`` (the header as received) signs ``body`` with ``secret``."""
    return signature is not None and hmac.compare_digest(sign(body, secret), signature)


@dataclass(frozen=True)
class Message:
    """A change as listeners see it."""

    id: str
    seq: int
    event: str
    collection: str | None
    item_id: str | None
    time: str
    #: The Item JSON as written (for removals the last known Item), hrefs absolute when
    #: a public base URL is configured; kept as bytes, parsed only when asked.
    item_json: bytes | None = None
    #: The collection as it is now, for ``collection.created`` and ``collection.changed``.
    collection_document: dict[str, Any] | None = None
    #: Where the Item (or collection) JSON is published.
    href: str | None = None

    @cached_property
    def item(self) -> dict[str, Any] | None:
        return None if self.item_json is None else loads(self.item_json)

    def payload(self) -> dict[str, Any]:
        """The webhook body's fields."""
        body = self._head()
        body["item"] = self.item
        return body

    def body(self) -> bytes:
        """:meth:`payload` as JSON, the Item's bytes spliced in as they are (not re-encoded)."""
        head = dumps(self._head())
        item = self.item_json.rstrip(b"\n") if self.item_json is not None else b"null"
        return head[:-2] + b',"item":' + item + b"}\n"

    def _head(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "event": self.event,
            "collection": self.collection,
            "item_id": self.item_id,
            "time": self.time,
        }
        if self.collection_document is not None:
            head["collection_document"] = self.collection_document
        if self.href is not None:
            head["href"] = self.href
        return head

    @property
    def datetime(self) -> str | None:
        """The Item's nominal datetime (or the start of its range), ISO 8601."""
        props = (self.item or {}).get("properties") or {}
        return props.get("datetime") or props.get("start_datetime")

    @property
    def bbox(self) -> list[float] | None:
        bbox = (self.item or {}).get("bbox")
        return list(bbox) if bbox else None


class Composer:
    """Turns rows of the change stream into :class:`Message` objects."""

    def __init__(
        self,
        catalog: CatalogSettings,
        collections: Mapping[str, CollectionSettings],
        public_base_url: str | None = None,
    ) -> None:
        self.catalog = catalog
        self.collections = dict(collections)
        self.layout = Layout(catalog.root.resolve())
        self.urls = PublishedUrls(self.layout, public_base_url)
        self.absolute = public_base_url is not None
        self._identity: uuid.UUID | None = None

    def message(self, change: Change, state: State) -> Message:
        """The message for one change; ``state`` is read (the catalog's identity, the
        collection's partitioning, the collection document), never changed."""
        if self._identity is None:
            self._identity = uuid.UUID(state.identity())
        common = {
            "id": str(uuid.uuid5(self._identity, str(change.seq))),
            "seq": change.seq,
            "event": change.event or _EVENTS[change.kind],
            "collection": change.collection,
            "item_id": change.key if change.kind in ("item", "delete_item") else None,
            "time": iso(change.queued_at),
        }
        if change.kind in ("item", "delete_item"):
            data = change.document
            href = None
            if data is not None:
                item = loads(data)
                scheme = self._partitioning(change.collection, state)
                href = self.urls.item_url(change.collection, item_parts(item, scheme), item.get("id") or change.key or "")
                if self.absolute:
                    data = dumps(self.urls.resolve(item, href, "application/geo+json"))
            return Message(**common, item_json=data, href=href)
        href = self.urls.collection_url(change.collection)
        if change.kind == "delete_collection":
            return Message(**common, href=href)
        rendered = Renderer(state, self.layout, self.catalog, self.collections, DEFAULT_SUMMARIES).collection(change.collection)
        document = loads(rendered) if rendered is not None else None
        if document is not None and self.absolute:
            document = self.urls.resolve(document, href, "application/json")
        return Message(**common, collection_document=document, href=href)

    def test_message(self) -> Message:
        """A message no change produced: ``stacwatchd notify test``."""
        return Message(
            id=str(uuid.uuid4()), seq=0, event=TEST_EVENT, collection=None, item_id=None, time=iso(datetime.now(UTC).timestamp())
        )

    def _partitioning(self, collection: str, state: State) -> Any:
        stored = state.collection_settings(collection)
        if stored is not None and stored.get("partition"):
            return stored["partition"]
        configured = self.collections.get(collection)
        return configured.partition if configured is not None else "year/month"


_EVENTS = {
    "item": "item.updated",
    "delete_item": "item.removed",
    "collection": "collection.changed",
    "delete_collection": "collection.removed",
}


def iso(epoch: float) -> str:
    """UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
