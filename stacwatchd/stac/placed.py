"""An Item rendered where the catalog puts it: its final JSON and what is stored beside it.

The writer is the one serial step of the engine. A build process therefore renders its
Item's final JSON (structural links, relative hrefs), its bytes, their hash, the
compressed copy the state keeps and the row the summaries index, for the catalog as it
was when its rules were made. The writer takes that as is when the catalog still places
the collection the same way and the Item is new; otherwise it renders the Item itself,
through the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

from stacwatchd.stac.documents import item_document
from stacwatchd.stac.json import dumps
from stacwatchd.stac.layout import Layout, partition_of
from stacwatchd.stac.summaries import ItemIndex, index_item
from stacwatchd.state.packed import compress

__all__ = ["PlacedItem", "Placement", "place", "render_placed"]


@dataclass(frozen=True, slots=True)
class Placement:
    """How the catalog places a collection's Items: what an Item's JSON depends on
    besides the Item itself."""

    root: Path
    root_title: str
    collection_title: str
    partition: str


@dataclass(frozen=True, slots=True)
class PlacedItem:
    """A new Item's final JSON and what the writer stores beside it."""

    placement: Placement
    partition: str
    data: bytes
    packed: bytes
    digest: str
    created: str
    index: ItemIndex


def place(item: dict[str, Any], *, collection_id: str, first: datetime, placement: Placement) -> PlacedItem:
    """Render ``item`` (changed in place: pass a copy) as the writer would for a new Item."""
    return render_placed(item, collection_id=collection_id, first=first, placement=placement)[1]


def render_placed(
    item: dict[str, Any], *, collection_id: str, first: datetime, placement: Placement, created: str | None = None
) -> tuple[dict[str, Any], PlacedItem]:
    """The Item's final JSON document and its rendering; ``created`` keeps the time an
    overwritten Item was first cataloged."""
    parts = partition_of(first, placement.partition)  # type: ignore[arg-type]
    _, doc = item_document(
        item,
        layout=Layout(placement.root),
        collection_id=collection_id,
        parts=parts,
        root_title=placement.root_title,
        collection_title=placement.collection_title,
        created=created,
    )
    data = dumps(doc)
    return doc, PlacedItem(
        placement=placement,
        partition="/".join(parts),
        data=data,
        packed=compress(data),
        digest=sha256(data).hexdigest(),
        created=doc["properties"]["created"],
        index=index_item(doc),
    )
