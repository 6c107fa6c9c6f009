"""Names the catalog is made of, defined once: file names, link relations, extension schemas."""

from __future__ import annotations

__all__ = [
    "CATALOG_FILE",
    "COLLECTION_FILE",
    "FILE_V2",
    "PROJECTION_V1",
    "PROJECTION_V2",
    "RASTER_V1",
    "RASTER_V2",
    "STAC_VERSION",
    "STRUCTURAL_RELS",
    "THUMBNAIL_FILE",
]

#: The STAC version of every document the catalog holds.
STAC_VERSION = "1.1.0"

CATALOG_FILE = "catalog.json"
COLLECTION_FILE = "collection.json"
THUMBNAIL_FILE = "thumbnail.png"

#: Links that make up the catalog's tree (rewritten by stacwatchd, never copied from a source).
STRUCTURAL_RELS = frozenset({"root", "parent", "child", "item", "collection", "self"})

PROJECTION_V1 = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_V1 = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
RASTER_V2 = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
FILE_V2 = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
