"""The JSON documents of the static catalog, as pure functions of what they describe.

The writer, ``rebuild`` and the ``item`` command all render through here, which is
what makes an incremental catalog byte-identical to a rebuilt one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacwatchd.stac.layout import Layout, item_file_stem, localise_hrefs, partition_title, structural_link
from stacwatchd.stac.names import CATALOG_FILE, COLLECTION_FILE, PROJECTION_V2, RASTER_V2, STAC_VERSION, STRUCTURAL_RELS

__all__ = ["collection_document", "item_document", "partition_document", "relink_item", "root_document"]


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

    Takes ownership of ``item`` (a fresh dict from ``item_to_dict``) and changes it in
    place. ``created`` keeps the first-cataloged time when a file is overwritten.
    """
    path = layout.item_file(collection_id, parts, item["id"])
    doc = localise_hrefs(item, path)
    if created is not None:
        doc["properties"]["created"] = created
    relink_item(
        doc,
        layout=layout,
        collection_id=collection_id,
        parts=parts,
        root_title=root_title,
        collection_title=collection_title,
    )
    doc["collection"] = collection_id
    return path, _ordered_item(doc)


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


# -- catalogs and collections -----------------------------------------------------------

WHOLE_WORLD = [-180.0, -90.0, 180.0, 90.0]


def root_document(
    *,
    layout: Layout,
    catalog_id: str,
    title: str,
    description: str,
    collections: list[tuple[str, str]],
    self_href: str | None = None,
) -> dict[str, Any]:
    """The root catalog: one child link per collection (id, title), sorted by id."""
    path = layout.root_catalog
    links = [structural_link("root", path, path, title)]
    if self_href:
        links.append({"rel": "self", "href": self_href, "type": "application/json", "title": title})
    links += [structural_link("child", layout.collection_file(cid), path, ctitle) for cid, ctitle in collections]
    return {
        "type": "Catalog",
        "id": catalog_id,
        "stac_version": STAC_VERSION,
        "title": title,
        "description": description,
        "links": links,
    }


def collection_document(
    *,
    layout: Layout,
    collection_id: str,
    meta: dict[str, Any],
    root_title: str,
    extent: dict[str, Any],
    summaries: dict[str, Any],
    children: list[tuple[str, ...]] | None = None,
    items: list[str] | None = None,
) -> dict[str, Any]:
    """A collection with its extent, summaries, and links to partitions or Items."""
    path = layout.collection_file(collection_id)
    title = meta.get("title") or collection_id
    links = [
        structural_link("root", layout.root_catalog, path, root_title),
        structural_link("parent", layout.root_catalog, path, root_title),
    ]
    links += _downward_links(title, children, items)
    extensions = []
    if any(key.startswith("proj:") for key in summaries):
        extensions.append(PROJECTION_V2)
    if any(key.startswith("raster:") for key in summaries):
        extensions.append(RASTER_V2)
    doc: dict[str, Any] = {
        "type": "Collection",
        "id": collection_id,
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "title": title,
        "description": meta.get("description") or f"Rasters of {title}",
        "license": meta.get("license") or "other",
    }
    if meta.get("keywords"):
        doc["keywords"] = list(meta["keywords"])
    if meta.get("providers"):
        doc["providers"] = [{k: v for k, v in p.items() if v not in (None, [], ())} for p in meta["providers"]]
    doc["extent"] = extent
    if summaries:
        doc["summaries"] = summaries
    doc["links"] = links
    return doc


def partition_document(
    *,
    layout: Layout,
    collection_id: str,
    parts: tuple[str, ...],
    root_title: str,
    collection_title: str,
    children: list[tuple[str, ...]] | None = None,
    items: list[str] | None = None,
) -> dict[str, Any]:
    """A time-partition catalog between a collection and its Items."""
    path = layout.partition_file(collection_id, parts)
    title = partition_title(collection_title, parts)
    parent_parts = parts[:-1]
    parent_title = partition_title(collection_title, parent_parts) if parent_parts else collection_title
    links = [
        structural_link("root", layout.root_catalog, path, root_title),
        structural_link("parent", layout.partition_file(collection_id, parent_parts), path, parent_title),
    ]
    links += _downward_links(collection_title, children, items)
    return {
        "type": "Catalog",
        "id": "-".join((collection_id, *parts)),
        "stac_version": STAC_VERSION,
        "title": title,
        "description": f"{title}: Items of collection {collection_id}",
        "links": links,
    }


def _downward_links(
    collection_title: str,
    children: list[tuple[str, ...]] | None,
    items: list[str] | None,
) -> list[dict[str, str]]:
    """Child partitions and Items sit one folder below their catalog, so their hrefs are
    plain string formatting (a partition may list thousands of Items)."""
    links = [
        {
            "rel": "child",
            "href": f"./{child[-1]}/catalog.json",
            "type": "application/json",
            "title": partition_title(collection_title, child),
        }
        for child in children or ()
    ]
    for item_id in items or ():
        name = item_file_stem(item_id)
        links.append({"rel": "item", "href": f"./{name}/{name}.json", "type": "application/geo+json", "title": item_id})
    return links


def relink_item(
    doc: dict[str, Any], *, layout: Layout, collection_id: str, parts: tuple[str, ...], root_title: str, collection_title: str
) -> dict[str, Any]:
    """An already placed Item with its structural links refreshed (titles may have changed)."""
    # The Item sits in <root>/<collection>/<parts…>/<id>/: its structural hrefs are
    # plain arithmetic on that depth (this runs once per Item written).
    up = "../" * (1 + len(parts))
    parent_title = partition_title(collection_title, parts) if parts else collection_title
    parent_file = CATALOG_FILE if parts else COLLECTION_FILE
    structural = [
        {"rel": "root", "href": f"../{up}catalog.json", "type": "application/json", "title": root_title},
        {"rel": "parent", "href": f"../{parent_file}", "type": "application/json", "title": parent_title},
        {"rel": "collection", "href": f"{up}collection.json", "type": "application/json", "title": collection_title},
    ]
    doc["links"] = structural + [link for link in doc.get("links", []) if link["rel"] not in STRUCTURAL_RELS]
    return doc
