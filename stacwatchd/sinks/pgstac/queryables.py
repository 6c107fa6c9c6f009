"""A collection's queryables in PgSTAC: the Item fields a STAC API client may filter on.

Until told more, PgSTAC's ``/queryables`` lists ``id``, ``datetime`` and ``geometry`` only,
and CQL2 compares every other property as text. When a collection is published its
queryables are registered from the fields its summaries list and the Item fields its
configuration sets (platform, constellation, instruments, gsd), each with its JSON-schema
type, so stac-fastapi-pgstac advertises them at ``/collections/{id}/queryables`` and
filters read numbers as numbers and instruments as an array.

Only fields Items carry in ``properties`` are registered: PgSTAC filters read nothing
else. ``raster:spatial_resolution`` is summarised from the bands of each asset and so is
not among them; ``data_type`` is, because the Item builder copies a data type shared by
every band onto the Item.

Rows are per collection (``collection_ids = [id]``), written through PgSTAC's
``upsert_queryables`` (what ``pypgstac load_queryables`` calls), and only when they differ
from what is there. Those rows are stacwatchd's: one the collection no longer lists is
removed. A name an administrator registered for every collection, or for several
collections including this one, is theirs and left alone; PgSTAC drops a collection's own
rows when the collection is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import psycopg

from stacwatchd.stac.summaries import DEFAULT_SUMMARIES

__all__ = ["QUERYABLE_FIELDS", "queryables_document", "register_queryables"]

_DATA_TYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64", "other",
]  # fmt: skip

#: JSON-schema definition of every Item property stacwatchd can register as queryable.
QUERYABLE_FIELDS: dict[str, dict[str, Any]] = {
    "platform": {
        "title": "Platform",
        "description": "Unique name of the platform the data was acquired from (lower case)",
        "type": "string",
    },
    "constellation": {
        "title": "Constellation",
        "description": "Name of the constellation the platform belongs to (lower case)",
        "type": "string",
    },
    "instruments": {
        "title": "Instruments",
        "description": "Names of the instruments used (lower case)",
        "type": "array",
        "items": {"type": "string"},
    },
    "gsd": {
        "title": "Ground Sample Distance",
        "description": "Ground sample distance at the sensor, in metres",
        "type": "number",
        "exclusiveMinimum": 0,
    },
    "proj:code": {
        "title": "Projection code",
        "description": "Authority and code of the data's CRS (e.g. EPSG:32633); null when none matches exactly",
        "type": ["string", "null"],
    },
    "data_type": {
        "title": "Data type",
        "description": "Data type shared by every band of the Item's data files",
        "type": "string",
        "enum": _DATA_TYPES,
    },
}
# Set by the collection's configuration and copied onto every Item.
_CONFIGURED = ("platform", "constellation", "instruments", "gsd")
# Written on every located Item whatever the configuration says.
_ALWAYS = ("proj:code", "data_type")


def queryables_document(
    collection: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    summary_fields: Iterable[str] = DEFAULT_SUMMARIES,
) -> dict[str, Any]:
    """The queryables (a JSON Schema) of one collection.

    ``collection`` is the collection document, ``settings`` its configuration (a dumped
    ``CollectionSettings``), ``summary_fields`` the fields summarised when the settings
    name none. A field summarised from the Items is listed, and so is one the settings
    set; fields every Item carries are listed while they are summarised at all, even when
    too many distinct values keep them out of the summaries.
    """
    settings = settings or {}
    configured_summaries = tuple(settings.get("summaries") or summary_fields)
    names = set(collection.get("summaries") or {})
    names |= {name for name in configured_summaries if name in _ALWAYS}
    names |= {name for name in _CONFIGURED if settings.get(name) not in (None, "", [], ())}
    properties = {name: QUERYABLE_FIELDS[name] for name in sorted(names) if name in QUERYABLE_FIELDS}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "title": f"Queryables of {collection.get('title') or collection['id']}",
        "properties": properties,
    }


def register_queryables(conn: psycopg.Connection[Any], collection_id: str, document: Mapping[str, Any]) -> bool:
    """Make PgSTAC's queryables of ``collection_id`` those of ``document``, in the caller's
    transaction; True when anything was written."""
    wanted: Mapping[str, Any] = document.get("properties") or {}
    rows = conn.execute(
        "SELECT name, collection_ids, definition FROM pgstac.queryables "
        "WHERE name = ANY(%s) OR collection_ids = ARRAY[%s]::text[]",
        (list(wanted), collection_id),
    ).fetchall()
    current = {name: definition for name, ids, definition in rows if ids == [collection_id]}
    others = {name for name, ids, _ in rows if ids is None or (collection_id in ids and ids != [collection_id])}
    desired = {name: definition for name, definition in wanted.items() if name not in others}
    if current == desired:
        return False
    if desired:
        conn.execute(
            "SELECT pgstac.upsert_queryables(%s::jsonb, %s::text[], NULL, true)",
            (orjson.dumps({"properties": desired}).decode(), [collection_id]),
        )
    else:
        conn.execute("SELECT pgstac.delete_missing_queryables('{}'::text[], %s::text[])", ([collection_id],))
    return True
