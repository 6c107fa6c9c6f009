"""The JSON documents of the static catalog, as pure functions of what they describe.

The writer, ``rebuild`` and the ``item`` command all render through here, which is
what makes an incremental catalog byte-identical to a rebuilt one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from stacwatchd.layout import Layout, localise_hrefs, partition_title, structural_link

STAC_VERSION = "1.1.0"


def item_document(
    item: dict[str, Any],
    *,
    layout: Layout,
    collection_id: str,
    parts: tuple[str, ...],
    root_title: str,
    collection_title: str,
    created: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Where an Item lives and its JSON there: relative hrefs, structural links, collection.

    ``created`` keeps the first-cataloged time when a file is overwritten.
    """
    path = layout.item_file(collection_id, parts, item["id"])
    doc = localise_hrefs(copy.deepcopy(item), path)
    if created is not None:
        doc["properties"]["created"] = created
    parent_file = layout.partition_file(collection_id, parts)
    parent_title = partition_title(collection_title, parts) if parts else collection_title
    links = [
        structural_link("root", layout.root_catalog, path, root_title),
        structural_link("parent", parent_file, path, parent_title),
        structural_link("collection", layout.collection_file(collection_id), path, collection_title),
    ]
    doc["links"] = links + [link for link in doc.get("links", []) if link["rel"] not in _STRUCTURAL]
    doc["collection"] = collection_id
    return path, _ordered_item(doc)


_STRUCTURAL = {"root", "parent", "collection", "self", "child", "item"}
_ITEM_ORDER = ("type", "stac_version", "stac_extensions", "id", "collection", "geometry", "bbox", "properties", "links", "assets")


_PROPERTY_ORDER = ("datetime", "start_datetime", "end_datetime")


def _ordered_item(doc: dict[str, Any]) -> dict[str, Any]:
    """Fields in the order people read them: identity, where, when, then the rest."""
    ordered = {k: doc[k] for k in _ITEM_ORDER if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    props = ordered["properties"]
    first = {k: props[k] for k in _PROPERTY_ORDER if k in props}
    ordered["properties"] = first | {k: v for k, v in props.items() if k not in first}
    return ordered
