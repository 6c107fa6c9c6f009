"""What one PgSTAC transaction sends, read from the state.

Rows of the change stream are coalesced: whatever operations are queued for an Item,
what is sent is the Item as the state holds it *now* (or its deletion), so the last
operation wins and replaying a batch is harmless. Every collection a batch touches is
rendered from the state, like the static ``collection.json``; one left without Items is
deleted after its Items are.

Items stay compressed bytes until the moment they are sent and are parsed one at a
time: a batch of parsed Items alive at once triggers a full collection of the whole
process's heap in almost every batch, which cost more than everything else here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import orjson

from stacwatchd.config import CatalogSettings, CollectionSettings
from stacwatchd.log import get_logger
from stacwatchd.sinks.pgstac.hrefs import Hrefs
from stacwatchd.sinks.pgstac.queryables import queryables_document
from stacwatchd.stac.layout import Layout
from stacwatchd.stac.render import Renderer
from stacwatchd.state.packed import decompress
from stacwatchd.state.store import Change, State

__all__ = ["HEAD", "TAIL", "PendingItem", "Plan", "Planner", "Progress", "PublishCounts"]

#: What a row needs before it counts as delivered: the head of the push (collections
#: upserted, Items deleted), its tail (emptied collections deleted), or one Item sent.
HEAD = "head"
TAIL = "tail"
Need = str | tuple[str, str]


@dataclass(slots=True)
class PublishCounts:
    """What a drain or a full publish did."""

    outbox_rows: int = 0
    collections: int = 0
    collections_deleted: int = 0
    items: int = 0
    items_changed: int = 0
    items_deleted: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0

    def merge(self, other: PublishCounts) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


class PendingItem(NamedTuple):
    """An Item to send, still as the state's compressed bytes (sorted by collection and
    time, so a transaction touches few partitions)."""

    collection: str
    start_us: int
    id: str
    partition: str
    blob: bytes


@dataclass(slots=True)
class Progress:
    """What of a plan PgSTAC has committed so far (a push may commit in several steps)."""

    head: bool = False
    items: set[tuple[str, str]] = field(default_factory=set)
    tail: bool = False

    def met(self, need: Need) -> bool:
        if need == HEAD:
            return self.head
        if need == TAIL:
            return self.tail
        return need in self.items


@dataclass(slots=True)
class Plan:
    """What one push sends: collections (None: delete) with their queryables, Item
    deletions, Items."""

    collections: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    queryables: dict[str, dict[str, Any]] = field(default_factory=dict)
    deletes: dict[str, list[str]] = field(default_factory=dict)
    items: list[PendingItem] = field(default_factory=list)
    skipped: int = 0
    #: (seq, need) of each row the plan stands for, in stream order.
    needs: list[tuple[int, Need]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.collections or self.deletes or self.items)

    def delivered(self, progress: Progress) -> int | None:
        """The seq of the last row whose effect, and every earlier row's, is committed."""
        last = None
        for seq, need in self.needs:
            if not progress.met(need):
                break
            last = seq
        return last


class Planner:
    """Reads the state into plans; call its methods inside ``state.snapshot()`` where a
    plan must see one consistent state."""

    def __init__(
        self,
        layout: Layout,
        catalog: CatalogSettings,
        collections: Mapping[str, CollectionSettings],
        summaries: tuple[str, ...],
        hrefs: Hrefs,
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.collections = collections
        self.summaries = summaries
        self.hrefs = hrefs
        self.log = get_logger()
        self._render: Renderer | None = None

    def changes(self, rows: Sequence[Change], state: State) -> Plan:
        """One batch of the change stream, coalesced: the last operation per Item wins."""
        plan = Plan()
        items: dict[tuple[str, str], None] = {}
        for row in rows:
            plan.collections.setdefault(row.collection, None)
            if row.kind in ("item", "delete_item") and row.key is not None:
                items.pop((row.collection, row.key), None)
                items[(row.collection, row.key)] = None
        for cid in plan.collections:
            self._collection(plan, state, cid)
        for collection, item_id in items:
            self._add(plan, collection, item_id, state.item_publish_row(collection, item_id))
        plan.items.sort()
        sent = {(item.collection, item.id) for item in plan.items}
        for row in rows:
            need: Need
            if row.kind in ("item", "delete_item") and row.key is not None:
                need = (row.collection, row.key) if (row.collection, row.key) in sent else HEAD
            else:
                need = HEAD if plan.collections[row.collection] is not None else TAIL
            plan.needs.append((row.seq, need))
        return plan

    def collections_plan(self, state: State, collections: Sequence[str]) -> Plan:
        """Upserts of these collections, rendered now."""
        plan = Plan()
        for cid in collections:
            self._collection(plan, state, cid)
        return plan

    def items_after(self, state: State, after: tuple[str, int, str], limit: int) -> tuple[Plan | None, tuple[str, int, str]]:
        """The next ``limit`` Items of the whole state, in time order (few partitions each)."""
        rows = state.items_after(after, limit)
        if not rows:
            return None, after
        plan = Plan()
        for collection, start_us, item_id, partition, doc, xkind in rows:
            self._add(plan, collection, item_id, (partition, doc, xkind, start_us), prune=False)
        last = rows[-1]
        return plan, (last[0], last[1], last[2])

    def prune(self, state: State, collection: str, published: set[str], limit: int) -> Iterator[Plan]:
        """Deletions of the Items PgSTAC has in ``collection`` and the state does not."""
        wanted = state.item_ids(collection, with_bbox=True)  # no bbox: never sent (see _add)
        extra = sorted(published - wanted)
        for start in range(0, len(extra), limit):
            yield Plan(deletes={collection: extra[start : start + limit]})

    def collection_doc(self, state: State, collection: str) -> dict[str, Any] | None:
        """The collection as PgSTAC gets it, or None when it has no Items (delete it)."""
        data = self._renderer(state).collection(collection)
        return None if data is None else self.hrefs.collection(orjson.loads(data))

    def item_doc(self, state: State, collection: str, item_id: str) -> dict[str, Any] | None:
        """The Item as PgSTAC gets it, or None when it is not in the state."""
        found = state.item_publish_row(collection, item_id)
        if found is None:
            return None
        return self.hrefs.item(orjson.loads(decompress(found[1])), collection, found[0])

    def _collection(self, plan: Plan, state: State, collection: str) -> None:
        doc = plan.collections[collection] = self.collection_doc(state, collection)
        if doc is not None:
            render = self._renderer(state)
            meta = render.collection_meta(collection)
            plan.queryables[collection] = queryables_document(doc, meta, render.summary_fields)

    def _add(
        self,
        plan: Plan,
        collection: str,
        item_id: str,
        found: tuple[str, bytes, str, int] | None,
        *,
        prune: bool = True,
    ) -> None:
        if found is None:
            plan.deletes.setdefault(collection, []).append(item_id)
            return
        partition, blob, xkind, start_us = found
        if xkind == "u":
            # No bbox, no geometry: PgSTAC cannot hold it (items.geometry is NOT NULL).
            plan.skipped += 1
            self.log.info("pgstac_item_skipped", collection=collection, id=item_id, reason="no geometry")
            if prune:
                plan.deletes.setdefault(collection, []).append(item_id)
            return
        plan.items.append(PendingItem(collection, start_us, item_id, partition, blob))

    def _renderer(self, state: State) -> Renderer:
        if self._render is None or self._render.state is not state:
            self._render = Renderer(state, self.layout, self.catalog, self.collections, self.summaries)
        return self._render
