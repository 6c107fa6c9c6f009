"""Render the catalog's Catalog and Collection JSON from the state index.

Shared by the writer (which writes the bytes) and the PgSTAC publisher (which sends
collections), each with its own connection to the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stacwatchd.config import CatalogSettings, CollectionSettings
from stacwatchd.stac.documents import collection_document, partition_document, root_document
from stacwatchd.stac.json import dumps
from stacwatchd.stac.layout import Layout
from stacwatchd.stac.summaries import (
    MAX_DISTINCT,
    RANGE_FIELDS,
    SET_FIELDS,
    extent_document,
    summaries_document,
)
from stacwatchd.state.store import State

__all__ = ["Renderer"]

_DEPTH = {"none": 0, "year": 1, "year/month": 2, "year/month/day": 3}


class Renderer:
    """Pure functions of the state, bound to one connection and one catalog layout."""

    def __init__(
        self,
        state: State,
        layout: Layout,
        settings: CatalogSettings,
        collections: Mapping[str, CollectionSettings],
        summary_fields: tuple[str, ...],
    ) -> None:
        self.state = state
        self.layout = layout
        self.settings = settings
        self.collections = collections
        self.summary_fields = summary_fields

    @property
    def root_title(self) -> str:
        return self.settings.title or self.settings.id

    def collection_meta(self, collection: str) -> dict[str, Any]:
        stored = self.state.collection_settings(collection)
        if stored is not None:
            return stored
        configured = self.collections.get(collection) or CollectionSettings(id=collection)
        return configured.model_dump(mode="json")

    def root(self) -> bytes:
        collections = []
        for cid in self.state.collection_ids():
            meta = self.collection_meta(cid)
            collections.append((cid, meta.get("title") or cid))
        doc = root_document(
            layout=self.layout,
            catalog_id=self.settings.id,
            title=self.root_title,
            description=self.settings.description,
            collections=collections,
            self_href=self.settings.self_href,
        )
        return dumps(doc)

    def collection(self, collection: str) -> bytes | None:
        if not self.state.has_items(collection):
            return None
        meta = self.collection_meta(collection)
        depth = _DEPTH[meta.get("partition") or "year/month"]
        agg = self.state.extent_aggregates(collection)
        ranges = {name: self.state.numeric_range(collection, col) for name, col in RANGE_FIELDS.items()}
        distinct = {name: self.state.distinct_values(collection, name, MAX_DISTINCT + 1) for name in SET_FIELDS}
        fields = tuple(meta.get("summaries") or self.summary_fields)
        children = [(name,) for name in self.state.child_partitions(collection, "")] if depth else None
        items = self.state.items_in_partition(collection, "") if not depth else None
        doc = collection_document(
            layout=self.layout,
            collection_id=collection,
            meta=meta,
            root_title=self.root_title,
            extent=extent_document(agg),
            summaries=summaries_document(fields, ranges, distinct),
            children=children,
            items=items,
        )
        return dumps(doc)

    def partition(self, collection: str, partition: str) -> bytes | None:
        meta = self.collection_meta(collection)
        depth = _DEPTH[meta.get("partition") or "year/month"]
        parts = tuple(partition.split("/")) if partition else ()
        if not parts:
            return self.collection(collection)
        if len(parts) >= depth:
            items = self.state.items_in_partition(collection, partition)
            children = None
            if not items:
                return None
        else:
            items = None
            children = [(*parts, name) for name in self.state.child_partitions(collection, partition)]
            if not children:
                return None
        doc = partition_document(
            layout=self.layout,
            collection_id=collection,
            parts=parts,
            root_title=self.root_title,
            collection_title=meta.get("title") or collection,
            children=children,
            items=items,
        )
        return dumps(doc)
